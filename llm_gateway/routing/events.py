"""What routing tells the metrics: a seam with no-op defaults, and its metrics version.

Rare events (retries, fallbacks, health changes): they go to the counters directly, not
through the request tally. Label values come from the config (route, deployment and fallback
model names) and the fixed reason and state sets."""

from __future__ import annotations

from llm_gateway.errors import GatewayError
from llm_gateway.metrics.registry import (
    GatewayMetrics,
    backend_error_code,
    backend_error_status,
)
from llm_gateway.routing.health import STATE_VALUES


class RoutingEvents:
    def retried(self, route: str, deployment: str, reason: str) -> None:
        """A call left `deployment` after a failure (`reason`) for the route's next one."""

    def fell_back(self, route: str, model: str, reason: str) -> None:
        """A call of `route` went to the fallback model `model`."""

    def state(self, route: str, deployment: str, state: str) -> None:
        """A deployment's health changed (health.py's states)."""

    def answered(self, backend: str, status: int) -> None:
        """A deployment's (or fallback's) backend answered a call with `status`."""

    def raised(self, backend: str, error: GatewayError) -> None:
        """A deployment's (or fallback's) backend call failed with `error`."""


class MetricsEvents(RoutingEvents):
    def __init__(self, metrics: GatewayMetrics, deployments: dict[str, list[str]]) -> None:
        self._metrics = metrics
        for route, names in deployments.items():  # every deployment shown, healthy, at start
            for name in names:
                metrics.deployment_state.labels(route, name).set(0)

    def retried(self, route: str, deployment: str, reason: str) -> None:
        self._metrics.deployment_retries.labels(route, deployment, reason).inc()

    def fell_back(self, route: str, model: str, reason: str) -> None:
        self._metrics.fallbacks.labels(route, model, reason).inc()

    def state(self, route: str, deployment: str, state: str) -> None:
        self._metrics.deployment_state.labels(route, deployment).set(STATE_VALUES[state])

    # Every attempt's failure, not only the call's last: which backend fails is the point.
    def answered(self, backend: str, status: int) -> None:
        if backend_error_status(status):
            self._metrics.backend_errors.labels(backend, str(status)).inc()

    def raised(self, backend: str, error: GatewayError) -> None:
        code = backend_error_code(error)
        if code is not None:
            self._metrics.backend_errors.labels(backend, code).inc()
