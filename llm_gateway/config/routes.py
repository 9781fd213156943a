"""Model routes: a name (or glob) served by one backend, or by several deployments balanced by a
strategy, with fallbacks to other model names by failure reason (docs/providers.md).

`check_routes` holds the rules that span routes and backends; the loader runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from llm_gateway.config.checks import non_empty

# weighted: random, by weight; least_inflight: the fewest calls open now; latency: the lowest
# recent time to first byte; priority: the lowest priority number that is available.
Strategy = Literal["weighted", "least_inflight", "latency", "priority"]
# Why a call moved on to a fallback model (also the x-lgw-fallback header and metric label).
FALLBACK_REASONS = ("error", "rate_limit", "context_window", "content_policy")


def is_pattern(name: str) -> bool:
    """True when a model name is a glob pattern ('*' or '?'), not an exact name."""
    return "*" in name or "?" in name


@lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    # Not fnmatch: '[' must stay literal, since model names may contain brackets.
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def _deployment_name(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > 64 or not value.isprintable() or " " in value:
        return "must be 1-64 printable characters without spaces (it is a header and a label)"
    return None


@dataclass(frozen=True)
class DeploymentConfig:
    """One place a route's model runs: a backend, the name it knows the model by, its share."""

    backend: str  # an upstream or local backend name
    upstream_model: str | None = field(default=None, metadata={"check": non_empty})
    # Unique within the route; in x-lgw-deployment, the ledger, metrics. None: the backend's
    # name (with the upstream model after a '/' when the route uses that backend twice).
    name: str | None = field(default=None, metadata={"check": _deployment_name})
    weight: float = field(default=1.0, metadata={"gt": 0})  # strategy weighted (and ties)
    priority: int = field(default=0, metadata={"ge": 0})  # strategy priority: 0 first
    # This deployment's own limits (its key's quota upstream), per gateway replica: a
    # deployment at its limit is skipped, not cooled down.
    rpm: int | None = field(default=None, metadata={"ge": 1})
    tpm: int | None = field(default=None, metadata={"ge": 1})


@dataclass(frozen=True)
class CooldownConfig:
    """How long a failing deployment is left alone before one probe call tries it again."""

    base_seconds: float = field(default=5.0, metadata={"gt": 0})  # the first cooldown
    max_seconds: float = field(default=300.0, metadata={"gt": 0})  # doubling up to this
    # A 429's Retry-After (seconds or a date) is honoured up to this long.
    max_retry_after_seconds: float = field(default=600.0, metadata={"ge": 0})
    failures: int = field(default=1, metadata={"ge": 1})  # failures in a row that cool it


@dataclass(frozen=True)
class ModelRoute:
    name: str = field(metadata={"check": non_empty})  # exact name, or a '*'/'?' glob
    backend: str | None = None  # one upstream or local backend; or `deployments`
    upstream_model: str | None = field(default=None, metadata={"check": non_empty})
    aliases: list[str] = field(default_factory=list)  # extra exact names; not on patterns
    owned_by: str | None = None
    deployments: list[DeploymentConfig] = field(default_factory=list)  # instead of backend
    strategy: Strategy = "weighted"
    # Deployments tried per call before the fallbacks; None: each available one once.
    max_attempts: int | None = field(default=None, metadata={"ge": 1})
    # Other model names, in order, for a call every deployment failed: by reason, then the
    # general list (`fallbacks`) for anything else, or a reason with no list of its own.
    fallbacks: list[str] = field(default_factory=list)
    rate_limit_fallbacks: list[str] = field(default_factory=list)  # 429s
    context_window_fallbacks: list[str] = field(default_factory=list)  # context_length_exceeded
    content_policy_fallbacks: list[str] = field(default_factory=list)  # content filters

    @property
    def is_pattern(self) -> bool:
        return is_pattern(self.name)

    def matches(self, model: str) -> bool:
        """Whether this route serves ``model`` (by name, alias, or glob pattern)."""
        if self.is_pattern:
            return glob_regex(self.name).fullmatch(model) is not None
        return model == self.name or model in self.aliases

    def fallbacks_for(self, reason: str) -> list[str]:
        """The fallback models for a failure reason (FALLBACK_REASONS), in order. A context
        or content-policy failure goes only to its own list: the general list is for models
        that can stand in when this one is down, not for ones with a longer context."""
        if reason == "context_window":
            return self.context_window_fallbacks
        if reason == "content_policy":
            return self.content_policy_fallbacks
        if reason == "rate_limit" and self.rate_limit_fallbacks:
            return self.rate_limit_fallbacks
        return self.fallbacks

    def deployment_list(self) -> list[DeploymentConfig]:
        """Its deployments; a single-backend route is one deployment named for its backend."""
        if self.deployments:
            return self.deployments
        assert self.backend is not None  # the loader requires one of the two
        return [DeploymentConfig(backend=self.backend, upstream_model=self.upstream_model)]

    def deployment_names(self) -> list[str]:
        """Each deployment's name, as `DeploymentConfig.name` says."""
        deployments = self.deployment_list()
        twice = {d.backend for d in deployments
                 if sum(e.backend == d.backend for e in deployments) > 1}
        return [d.name or (f"{d.backend}/{d.upstream_model or self.name}"
                           if d.backend in twice else d.backend) for d in deployments]


def check_routes(models: Any, known: list[str] | None, route_backend: Callable[[str], str | None],
                 fail: Callable[[str, str], None]) -> None:
    """Backends named, one of backend/deployments, unique deployment names, fallbacks that
    lead somewhere. `known`: the backend names (None when a section is broken)."""

    def backend(path: str, name: str | None) -> None:
        if known is not None and name is not None and name not in known:
            fail(path, f"unknown backend {name!r} (known: {', '.join(known) or 'none'})")

    for i, route in enumerate(models if isinstance(models, list) else []):
        if not isinstance(route, ModelRoute):
            continue  # its own problems are already reported
        path = f"models[{i}]"
        if route.backend is None and not route.deployments:
            fail(f"{path}.backend", "required (or a list of deployments)")
            continue
        if route.backend is not None and route.deployments:
            fail(f"{path}.deployments", "not allowed with backend: name one backend, or "
                 "list the deployments")
            continue
        if route.deployments and route.upstream_model is not None:
            fail(f"{path}.upstream_model", "not allowed with deployments (each deployment "
                 "has its own upstream_model)")
        backend(f"{path}.backend", route.backend)
        for j, deployment in enumerate(route.deployments):
            backend(f"{path}.deployments[{j}].backend", deployment.backend)
        names = route.deployment_names()
        for j, name in enumerate(names):
            if name in names[:j]:
                fail(f"{path}.deployments[{j}].name",
                     f"duplicate deployment name {name!r} in this route; name them")
        if route.max_attempts is not None and route.max_attempts > len(names):
            fail(f"{path}.max_attempts",
                 f"must be at most the number of deployments ({len(names)})")
        for key in ("fallbacks", "rate_limit_fallbacks", "context_window_fallbacks",
                    "content_policy_fallbacks"):
            for j, model in enumerate(getattr(route, key)):
                where = f"{path}.{key}[{j}]"
                if not model or is_pattern(model):
                    fail(where, "must be an exact model name")
                elif route.matches(model):
                    fail(where, f"{model!r} is this route's own model")
                elif route_backend(model) is None:
                    fail(where, f"model {model!r} is not routable (no route matches it and "
                         "routing.default_backend is not set)")


def check_names(models: Any, fail: Callable[[str, str], None]) -> None:
    """Aliases only on exact routes, every name and alias once."""
    seen: dict[str, int] = {}
    for i, route in enumerate(models if isinstance(models, list) else []):
        if not isinstance(route, ModelRoute):
            continue
        if route.aliases and route.is_pattern:
            fail(f"models[{i}].aliases",
                   f"aliases are not allowed on a pattern route ({route.name!r})")
        names = [(f"models[{i}].name", route.name, False)]
        if not route.is_pattern:
            names += [(f"models[{i}].aliases[{j}]", a, True) for j, a in enumerate(route.aliases)]
        for path, name, alias in names:
            if alias and is_pattern(name):
                fail(path, f"alias {name!r} is a pattern; aliases must be exact names")
            elif name in seen:
                fail(path, f"duplicate model name {name!r} (also models[{seen[name]}])")
            else:
                seen[name] = i
