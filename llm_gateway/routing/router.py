"""Model name -> Route: exact names and aliases first, then patterns in config order, then the
default backend. A backend with a fallback model is routed to through its `SpillOver`; a route
with deployments or fallbacks through its `DeploymentGroup` (group.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from llm_gateway.backends.base import Backend
from llm_gateway.backends.spill import SpillOver
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import Config, ModelRoute
from llm_gateway.echo import clip
from llm_gateway.errors import ModelNotFound
from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.routing.deployment import Deployment
from llm_gateway.routing.events import MetricsEvents, RoutingEvents
from llm_gateway.routing.group import DeploymentGroup


@dataclass(frozen=True, slots=True)
class Route:
    backend: Backend
    target_model: str  # the name the backend must see
    rule: ModelRoute | None  # None when the default backend caught an unknown name


class Router:
    def __init__(self, config: Config, backends: dict[str, Backend],
                 rng: random.Random | None = None) -> None:
        self._backends = backends
        self._outer: dict[str, Backend] = {
            name: SpillOver(b, self._spill_target) if b.fallback is not None else b
            for name, b in backends.items()}
        self.groups: dict[str, DeploymentGroup] = {}  # by route name
        self._exact: dict[str, Route] = {}
        self._patterns: list[tuple[ModelRoute, Backend]] = []
        for rule in config.models:
            backend = self._backend(rule, config, rng)
            if rule.is_pattern:
                self._patterns.append((rule, backend))
                continue
            target = rule.upstream_model or rule.name
            for name in (rule.name, *rule.aliases):
                self._exact[name] = Route(backend, target, rule)
        default = config.routing.default_backend
        self._default = self._outer[default] if default else None
        for group in self.groups.values():  # once every route is known (fallbacks resolve)
            group.responses_api = self._all_speak_responses(group)

    def _backend(self, rule: ModelRoute, config: Config,
                 rng: random.Random | None) -> Backend:
        if not rule.deployments and not any(
                (rule.fallbacks, rule.rate_limit_fallbacks, rule.context_window_fallbacks,
                 rule.content_policy_fallbacks)):
            assert rule.backend is not None
            return self._outer[rule.backend]  # one backend, nothing to balance or fall to
        cooldown = config.routing.cooldown
        deployments = [Deployment(name, d, self._outer[d.backend], cooldown)
                       for name, d in zip(rule.deployment_names(), rule.deployment_list(),
                                          strict=True)]
        group = DeploymentGroup(rule, deployments, self._fallback_target, RoutingEvents(), rng)
        self.groups[rule.name] = group
        return group

    def watch(self, metrics: GatewayMetrics) -> None:
        """Where the deployment groups report retries, fallbacks and health."""
        events = MetricsEvents(metrics, {route: [d.name for d in group.deployments]
                                         for route, group in self.groups.items()})
        for group in self.groups.values():
            group.events = events

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

    def upstream_of(self, route: Route) -> tuple[UpstreamBackend, str] | None:
        """The OpenAI-shaped upstream a passthrough call for this route goes to, and the name
        it must see: the route's own, or its first such deployment's; None when it has none."""
        group = self.groups.get(route.rule.name) if route.rule is not None else None
        if group is None:
            backend = route.backend
            if isinstance(backend, UpstreamBackend) and backend.cfg.kind == "openai":
                return backend, route.target_model
            return None
        for deployment in group.deployments:
            backend = deployment.backend
            if isinstance(backend, UpstreamBackend) and backend.cfg.kind == "openai":
                return backend, deployment.upstream_model or route.target_model
        return None

    def _all_speak_responses(self, group: DeploymentGroup) -> bool:
        """Whether every backend a call to `group` may reach (its deployments, its fallbacks'
        one hop) serves the Responses API itself: else such calls are translated to chat,
        which all of them speak."""
        reached: list[Backend] = [d.backend for d in group.deployments]
        rule = group.rule
        for model in {*rule.fallbacks, *rule.rate_limit_fallbacks,
                      *rule.context_window_fallbacks, *rule.content_policy_fallbacks}:
            try:
                backend = self.resolve(model).backend
            except ModelNotFound:
                continue
            if isinstance(backend, DeploymentGroup):
                reached.extend(d.backend for d in backend.deployments)
            else:
                reached.append(backend)
        return all(b.responses_api for b in reached)

    def _fallback_target(self, model: str) -> tuple[Backend, str]:
        route = self.resolve(model)
        return route.backend, route.target_model

    def _spill_target(self, model: str) -> tuple[Backend, str]:
        """Where a spilled call goes: the fallback route's own backend, not its SpillOver."""
        route = self.resolve(model)
        backend = route.backend
        return (backend.inner if isinstance(backend, SpillOver) else backend), route.target_model
