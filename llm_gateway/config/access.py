"""Who may call, and how much: auth mode, teams, rate limits and budgets.

Keys themselves are not configured here: they are created through the admin API or
`llm-gateway keys create` and live in the database (see storage). Teams may be declared here
(read-only at run time) or created through the admin API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llm_gateway.config.checks import env_var_name, non_empty
from llm_gateway.config.endpoints import families_problem

AuthMode = Literal["none", "keys", "passthrough"]
Period = Literal["day", "month", "total"]
CoalesceMode = Literal["deterministic", "all", "off"]
UnknownObjects = Literal["refuse", "forward"]
# Upper bounds of limits and budgets: far above any real use, and exact in a float and in
# every database column, so a typo (or 1e20) is refused instead of stored.
MAX_COUNT = 10**12  # requests or tokens
MAX_COST = 1e12  # USD


@dataclass(frozen=True)
class RateLimitConfig:
    """Requests and tokens per minute; None = no limit on that count."""

    rpm: int | None = field(default=None, metadata={"ge": 1, "le": MAX_COUNT})
    tpm: int | None = field(default=None, metadata={"ge": 1, "le": MAX_COUNT})


@dataclass(frozen=True)
class BudgetConfig:
    """Spend allowed per period: tokens and/or cost (USD, from `accounting.prices`)."""

    tokens: int | None = field(default=None, metadata={"ge": 0, "le": MAX_COUNT})
    cost: float | None = field(default=None, metadata={"ge": 0, "le": MAX_COST})
    period: Period = "month"  # calendar day / month in UTC, or for ever


@dataclass(frozen=True)
class CredentialsConfig:
    """A team's own credentials for one upstream, so its spend lands on its own bill."""

    api_key_env: str | None = field(default=None, metadata={"check": env_var_name})
    organization: str | None = field(default=None, metadata={"check": non_empty})
    project: str | None = field(default=None, metadata={"check": non_empty})


@dataclass(frozen=True)
class TeamGroupingConfig:
    coalesce: CoalesceMode | None = None  # None: the model's / the gateway's setting
    shared_cache: bool = False  # answers may come from, and go to, other teams' requests


@dataclass(frozen=True)
class TeamConfig:
    models: list[str] = field(default_factory=list)  # allowed names or globs; empty = all
    # Passthrough endpoint families allowed (files, images, ...); empty = what
    # routing.passthrough_endpoints allows, which a team can narrow but not widen.
    endpoints: list[str] = field(default_factory=list, metadata={"check": families_problem})
    limits: RateLimitConfig | None = None
    budget: BudgetConfig | None = None
    upstreams: dict[str, CredentialsConfig] = field(default_factory=dict)  # by upstream name
    grouping: TeamGroupingConfig = field(default_factory=TeamGroupingConfig)
    name: str = field(default="", metadata={"yaml": False})  # the key under `teams`


@dataclass(frozen=True)
class AuthConfig:
    mode: AuthMode = "none"
    # The admin API (/admin/...) answers only to this key; unset = admin API disabled (403).
    admin_key_env: str = field(default="LLM_GATEWAY_ADMIN_KEY", metadata={"check": env_var_name})
    # The secret keyed into key hashes; unset = one generated once into storage.data_dir.
    hash_secret_env: str = field(default="LLM_GATEWAY_KEY_SECRET",
                                 metadata={"check": env_var_name})
    cache_seconds: float = field(default=10.0, metadata={"ge": 0})  # key lookups per replica
    # While the database cannot be asked: how long after its last successful lookup a key
    # keeps working on a replica (it cannot see revocations made elsewhere). 0: 503 at once.
    stale_seconds: float = field(default=600.0, metadata={"ge": 0})
    # Keys mode: an object id (file, batch, stored response...) the gateway never saw created
    # is refused like another team's (404), or forwarded to whoever asks. See auth/ownership.py.
    unknown_objects: UnknownObjects = "refuse"


@dataclass(frozen=True)
class LimitsConfig:
    models: dict[str, RateLimitConfig] = field(default_factory=dict)  # per model, all callers
    key_default: RateLimitConfig | None = None  # for keys without limits of their own
    # The completion size reserved against budgets and token limits when a request sets no
    # max_tokens; settled with the real count afterwards.
    default_max_tokens: int = field(default=4096, metadata={"ge": 1})
