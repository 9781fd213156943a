"""The caller as the layers after auth see it: a key, its team, what it may use and spend.

Built by auth (from a stored key and its team), read by limits, grouping, routing (allowed
models, the team's own upstream credentials) and accounting (attribution). Immutable: a
cached Principal is shared by every request of its key until the cache entry expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.config.access import BudgetConfig, CoalesceMode, RateLimitConfig


@dataclass(frozen=True, slots=True)
class Credentials:
    """Upstream credentials that replace the gateway's own for one call."""

    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    project: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str  # a stored key's id; "anonymous" (auth none); "pt_<hash>" (passthrough)
    team: str | None = None
    # Allowed names/globs: a model must match the key's list and the team's list (an empty
    # list allows everything). Two lists, since two glob lists rarely intersect into one.
    models: tuple[str, ...] = ()  # the key's
    team_models: tuple[str, ...] = ()  # the team's
    # Passthrough endpoint families (files, images, ...), by the same rule: the key's list and
    # the team's, each empty = whatever routing.passthrough_endpoints allows.
    endpoints: tuple[str, ...] = ()
    team_endpoints: tuple[str, ...] = ()
    key_limits: RateLimitConfig | None = None
    team_limits: RateLimitConfig | None = None
    key_budget: BudgetConfig | None = None
    team_budget: BudgetConfig | None = None
    # Per upstream backend name; "*" applies to every upstream (passthrough mode).
    credentials: dict[str, Credentials] = field(default_factory=dict, repr=False)
    coalesce: CoalesceMode | None = None  # the team's grouping override
    shared_cache: bool = False

    def credentials_for(self, backend: str) -> Credentials | None:
        creds = self.credentials
        if not creds:
            return None
        return creds.get(backend) or creds.get("*")


ANONYMOUS = Principal(key_id="anonymous")
