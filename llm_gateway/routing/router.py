"""Model name -> Route: exact names and aliases first, then patterns in config order, then the
default backend. A backend with a fallback model is routed to through its `SpillOver`."""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.backends.base import Backend
from llm_gateway.backends.spill import SpillOver
from llm_gateway.config import Config, ModelRoute
from llm_gateway.echo import clip
from llm_gateway.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Route:
    backend: Backend
    target_model: str  # the name the backend must see
    rule: ModelRoute | None  # None when the default backend caught an unknown name


class Router:
    def __init__(self, config: Config, backends: dict[str, Backend]) -> None:
        self._backends = backends
        outer: dict[str, Backend] = {
            name: SpillOver(b, self._spill_target) if b.fallback is not None else b
            for name, b in backends.items()}
        self._exact: dict[str, Route] = {}
        self._patterns: list[tuple[ModelRoute, Backend]] = []
        for rule in config.models:
            backend = outer[rule.deployment_list()[0].backend]  # deployments: routing/
            if rule.is_pattern:
                self._patterns.append((rule, backend))
                continue
            target = rule.upstream_model or rule.name
            for name in (rule.name, *rule.aliases):
                self._exact[name] = Route(backend, target, rule)
        default = config.routing.default_backend
        self._default = outer[default] if default else None

    def resolve(self, model: str) -> Route:
        route = self._exact.get(model)
        if route is not None:
            return route
        for rule, backend in self._patterns:
            if rule.matches(model):
                return Route(backend, rule.upstream_model or model, rule)
        if self._default is not None:
            return Route(self._default, model, None)
        raise ModelNotFound(
            f"The model '{clip(model)}' does not exist or you do not have access to it.",
            param="model",
        )

    def routes_exactly(self) -> dict[str, Route]:
        """Every exact name (aliases included) and where it goes, for the model list."""
        return dict(self._exact)

    def claims(self, model: str, backend: Backend) -> bool:
        """Whether a model the backend lists would be routed back to that backend."""
        try:
            return self.resolve(model).backend.name == backend.name  # one backend per name
        except ModelNotFound:
            return False

    def _spill_target(self, model: str) -> tuple[Backend, str]:
        """Where a spilled call goes: the fallback route's own backend, not its SpillOver."""
        route = self.resolve(model)
        return self._backends[route.backend.name], route.target_model
