"""Which passthrough calls are allowed, and where they go.

Endpoint families (config/endpoints.py) are allowed by the config
(`routing.passthrough_endpoints`), then narrowed by the caller's team and key; a `model` named
in the body is checked like on the model endpoints and, when it names a configured route,
sent to that route's upstream under the route's upstream name.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import Config
from llm_gateway.config.endpoints import ALL, canonical, family_of
from llm_gateway.config.schema import PASSTHROUGH_OFF
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest, ModelNotFound, NotFound, PermissionDenied
from llm_gateway.principal import Principal
from llm_gateway.routing.router import Router

OFF_MESSAGE = ("The passthrough is turned off (routing.passthrough_backend: off): only the "
               "model endpoints are served here, not {method} {path}.")


class Policy:
    def __init__(self, config: Config) -> None:
        self.off = config.routing.passthrough_backend == PASSTHROUGH_OFF
        allowed = [canonical(name) for name in config.routing.passthrough_endpoints]
        self.allowed: frozenset[str] | None = None if ALL in allowed else frozenset(allowed)

    def family(self, method: str, path: str, principal: Principal) -> str:
        """The path's family, once the gateway, the caller's team and key all allow it."""
        if self.off:
            raise NotFound(OFF_MESSAGE.format(method=method, path=clip(path)),
                           code="passthrough_off")
        family = family_of(path)
        if not family:
            raise NotFound(f"Unknown path: {method} {clip(path)}.")
        shown = clip(family)
        if self.allowed is not None and family not in self.allowed:
            raise _refused(f"The '{shown}' endpoints ({clip(path)}) are not enabled on this "
                           "gateway (routing.passthrough_endpoints).")
        if not _listed(principal.endpoints, family):
            raise _refused(f"This key is not allowed to use the '{shown}' endpoints.")
        if not _listed(principal.team_endpoints, family):
            raise _refused(f"This key's team '{principal.team}' is not allowed to use the "
                           f"'{shown}' endpoints.")
        return family


def _listed(names: tuple[str, ...], family: str) -> bool:
    return not names or family in names or ALL in names


def _refused(message: str) -> PermissionDenied:
    return PermissionDenied(message, code="endpoint_not_allowed")


@dataclass(frozen=True, slots=True)
class Target:
    backend: UpstreamBackend
    model: str | None  # the name the upstream must see, when routing renamed it


def target(router: Router, default: UpstreamBackend, model: str | None, path: str) -> Target:
    """Where a passthrough call goes: the upstream of the route its model names, else the
    passthrough upstream (a model no route names is the upstream's business)."""
    if model is None:
        return Target(default, None)
    try:
        route = router.resolve(model)
    except ModelNotFound:
        return Target(default, None)
    if route.rule is None:  # caught by routing.default_backend, not named by a route
        return Target(default, None)
    upstream = router.upstream_of(route)
    if upstream is None:
        served_by = "a local backend, which serves only the model endpoints (chat, " \
            "completions, embeddings, responses)" if route.backend.local else \
            f"upstream '{route.backend.name}', which does not speak OpenAI's API (only its " \
            "model endpoints are served)"
        raise InvalidRequest(
            f"The model '{clip(model)}' is served by {served_by}, not {clip(path)}.",
            param="model", code="model_not_supported")
    backend, served = upstream
    return Target(backend, served if served != model else None)
