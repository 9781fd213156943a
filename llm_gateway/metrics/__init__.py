"""The gateway's Prometheus metrics: definitions (registry), recording (recorder), /metrics
(exposition)."""
