"""Keys and teams as stored and as shown: rows <-> records <-> the admin API's JSON.

Settings arrive as JSON-like dicts from the admin API and the CLI alike (the CLI builds the
same dict from its flags), so both go through `limits_from`, `budget_from` and friends here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway.auth.bounds import check_access
from llm_gateway.auth.times import stored_instant
from llm_gateway.config.access import (
    BudgetConfig,
    CredentialsConfig,
    RateLimitConfig,
    TeamConfig,
    TeamGroupingConfig,
)
from llm_gateway.config.endpoints import canonical, family_problem
from llm_gateway.echo import clip
from llm_gateway.errors import GatewayError, InvalidRequest

PERIODS = ("day", "month", "total")
COALESCE = ("deterministic", "all", "off")


class Conflict(GatewayError):
    """409: the change contradicts what exists (a config-defined team, a revoked key...)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    team: str | None
    models: tuple[str, ...] = ()
    limits: RateLimitConfig | None = None
    budget: BudgetConfig | None = None
    expires_at: float | None = None
    endpoints: tuple[str, ...] = ()  # passthrough families; empty = what the config allows
    disabled: bool = False
    revoked_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    last4: str = ""

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "object": "gateway.key",
            "id": self.id,
            "name": self.name,
            "team": self.team,
            "models": list(self.models),
            "endpoints": list(self.endpoints),
            "limits": _limits_json(self.limits),
            "budget": _budget_json(self.budget),
            "expires_at": _int(self.expires_at),
            "disabled": self.disabled,
            "status": self.status(now),
            "created_at": _int(self.created_at),
            "updated_at": _int(self.updated_at),
            "revoked_at": _int(self.revoked_at),
            "redacted_key": f"sk-lgw-...{self.last4}",
        }


@dataclass(frozen=True, slots=True)
class TeamRecord:
    config: TeamConfig
    source: str = "api"  # "config": declared in the config file, read-only
    created_at: float | None = None
    updated_at: float | None = None
    key_count: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.config.name

    def to_json(self) -> dict[str, Any]:
        team = self.config
        out = {
            "object": "gateway.team",
            "name": team.name,
            "source": self.source,
            **team_settings_json(team),
            "created_at": _int(self.created_at),
            "updated_at": _int(self.updated_at),
        }
        if self.key_count is not None:
            out["key_count"] = self.key_count
        return out


# --- settings: JSON-like values -> config objects (validated) ----------------------------------

def known_fields(fields: dict[str, Any] | Any, allowed: set[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown field '{clip(unknown[0])}'.", param=clip(unknown[0]))


def access_changes(fields: Any) -> dict[str, Any]:
    """`models`, `endpoints`, `limits` and `budget` from `fields`, for those present (keys
    and teams alike); null clears each."""
    changes: dict[str, Any] = {}
    if "models" in fields:
        changes["models"] = models_from(fields["models"])
    if "endpoints" in fields:
        changes["endpoints"] = endpoints_from(fields["endpoints"])
    if "limits" in fields:
        changes["limits"] = limits_from(fields["limits"])
    if "budget" in fields:
        changes["budget"] = budget_from(fields["budget"])
    check_access(changes)  # upper bounds: on the way in only, so stored rows always read
    return changes


def models_from(value: Any, param: str = "models") -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) and m for m in value):
        raise InvalidRequest(f"'{param}' must be a list of model names or globs.", param=param)
    return tuple(dict.fromkeys(value))  # keeps order, drops repeats


def endpoints_from(value: Any, param: str = "endpoints") -> tuple[str, ...]:
    """Passthrough endpoint families (config/endpoints.py); null or [] = the config's."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(e, str) for e in value):
        raise InvalidRequest(f"'{param}' must be a list of endpoint families (e.g. files, "
                             "images, audio).", param=param)
    for name in value:
        if (problem := family_problem(name)) is not None:
            raise InvalidRequest(f"'{param}': {problem}.", param=param)
    return tuple(dict.fromkeys(canonical(e) for e in value))


def limits_from(value: Any, param: str = "limits") -> RateLimitConfig | None:
    if value is None:
        return None
    obj = _object(value, param, {"rpm", "tpm"})
    rpm = _count(obj.get("rpm"), f"{param}.rpm", minimum=1)
    tpm = _count(obj.get("tpm"), f"{param}.tpm", minimum=1)
    return None if rpm is None and tpm is None else RateLimitConfig(rpm=rpm, tpm=tpm)


def budget_from(value: Any, param: str = "budget") -> BudgetConfig | None:
    if value is None:
        return None
    obj = _object(value, param, {"tokens", "cost", "period"})
    tokens = _count(obj.get("tokens"), f"{param}.tokens", minimum=0)
    cost = obj.get("cost")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)
                             or cost < 0):
        raise InvalidRequest(f"'{param}.cost' must be a number >= 0 (USD).",
                             param=f"{param}.cost")
    period = obj.get("period", "month")
    if period not in PERIODS:
        raise InvalidRequest(f"'{param}.period' must be one of {', '.join(PERIODS)}.",
                             param=f"{param}.period")
    if tokens is None and cost is None:
        return None
    return BudgetConfig(tokens=tokens, cost=None if cost is None else float(cost), period=period)


def upstreams_from(value: Any, param: str = "upstreams") -> dict[str, CredentialsConfig]:
    from llm_gateway.config.checks import env_var_name

    if value is None:
        return {}
    obj = _object(value, param, None)
    out: dict[str, CredentialsConfig] = {}
    for name, creds in obj.items():
        where = f"{param}.{clip(name)}"
        entry = _object(creds, where, {"api_key_env", "organization", "project"})
        env_name = entry.get("api_key_env")
        if env_name is not None and (not isinstance(env_name, str) or env_var_name(env_name)):
            # Only a variable's NAME is stored; a pasted key is refused, and never echoed.
            raise InvalidRequest(f"'{where}.api_key_env' must be the name of an environment "
                                 "variable holding the key, not the key itself.",
                                 param=f"{where}.api_key_env")
        out[name] = CredentialsConfig(api_key_env=env_name,
                                      organization=_text(entry, "organization", where),
                                      project=_text(entry, "project", where))
    return out


def grouping_from(value: Any, param: str = "grouping") -> TeamGroupingConfig:
    if value is None:
        return TeamGroupingConfig()
    obj = _object(value, param, {"coalesce", "shared_cache"})
    coalesce = obj.get("coalesce")
    if coalesce is not None and coalesce not in COALESCE:
        raise InvalidRequest(f"'{param}.coalesce' must be one of {', '.join(COALESCE)}.",
                             param=f"{param}.coalesce")
    shared = obj.get("shared_cache", False)
    if not isinstance(shared, bool):
        raise InvalidRequest(f"'{param}.shared_cache' must be a boolean.",
                             param=f"{param}.shared_cache")
    return TeamGroupingConfig(coalesce=coalesce, shared_cache=shared)


def team_settings_json(team: TeamConfig) -> dict[str, Any]:
    return {
        "models": list(team.models),
        "endpoints": list(team.endpoints),
        "limits": _limits_json(team.limits),
        "budget": _budget_json(team.budget),
        "upstreams": {name: dataclasses.asdict(c) for name, c in team.upstreams.items()},
        "grouping": dataclasses.asdict(team.grouping),
    }


# --- columns ------------------------------------------------------------------------------------

def dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def limits_column(limits: RateLimitConfig | None) -> str | None:
    return dumps(_limits_json(limits))


def budget_column(budget: BudgetConfig | None) -> str | None:
    return dumps(_budget_json(budget))


def _limits_json(limits: RateLimitConfig | None) -> dict[str, Any] | None:
    return None if limits is None else {"rpm": limits.rpm, "tpm": limits.tpm}


def _budget_json(budget: BudgetConfig | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"tokens": budget.tokens, "cost": budget.cost, "period": budget.period}


def _object(value: Any, param: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            field_name = f"{param}.{clip(unknown[0])}"
            raise InvalidRequest(f"Unknown field '{field_name}'.", param=field_name)
    return value


def _count(value: Any, param: str, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"'{param}' must be an integer >= {minimum}.", param=param)
    return value


def _text(obj: dict[str, Any], name: str, where: str) -> str | None:
    value = obj.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidRequest(f"'{where}.{name}' must be a non-empty string.",
                             param=f"{where}.{name}")
    return value


def _int(value: float | None) -> int | None:
    # Clamped: a time stored out of range (1e20) must not break the listing that shows it.
    value = stored_instant(value)
    return None if value is None else int(value)
