"""OpenTelemetry traces, optional (the `otel` extra): base.py is the seam, every method a no-op,
so with tracing off nothing of OpenTelemetry is imported; otel.py is the real one, loaded by
build.py only when `tracing.enabled` is true. Kept empty: call.py imports base.py."""
