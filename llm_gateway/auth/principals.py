"""A stored key and its team become the Principal the rest of the request path reads.

Key and team settings stay separate (limits and budgets are enforced at both levels); allowed
models must pass both lists; the team's upstream credentials are read from the environment
variables it names, so no upstream secret is ever stored by the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from llm_gateway.auth.records import KeyRecord
from llm_gateway.config.access import TeamConfig
from llm_gateway.config.endpoints import canonical
from llm_gateway.config.routes import glob_regex, is_pattern
from llm_gateway.principal import Credentials, Principal

log = logging.getLogger(__name__)


def principal_for(key: KeyRecord, team: TeamConfig | None, env: Mapping[str, str]) -> Principal:
    if team is None:
        if key.team is not None:
            # Its team was removed from the config (or database) after the key was made: the
            # key keeps its own settings and still reports usage under the team's name.
            log.warning("key %s names team %r, which does not exist", key.id, key.team)
        return Principal(key_id=key.id, team=key.team, models=key.models,
                         endpoints=key.endpoints, key_limits=key.limits,
                         key_budget=key.budget)
    return Principal(
        key_id=key.id,
        team=team.name,
        models=key.models,
        team_models=tuple(team.models),
        endpoints=key.endpoints,
        team_endpoints=tuple(canonical(e) for e in team.endpoints),  # config: as written
        key_limits=key.limits,
        team_limits=team.limits,
        key_budget=key.budget,
        team_budget=team.budget,
        credentials=team_credentials(team, env),
        coalesce=team.grouping.coalesce,
        shared_cache=team.grouping.shared_cache,
    )


def team_credentials(team: TeamConfig, env: Mapping[str, str]) -> dict[str, Credentials]:
    out: dict[str, Credentials] = {}
    for upstream, cfg in team.upstreams.items():
        api_key = None
        if cfg.api_key_env:
            api_key = env.get(cfg.api_key_env) or None
            if api_key is None:
                # The gateway's own key is used instead: the call still works, but its spend
                # lands on the gateway's bill, so say so loudly.
                log.warning("team %r: environment variable %s (its key for upstream %r) is not "
                            "set; using the gateway's own key", team.name, cfg.api_key_env,
                            upstream)
        if api_key or cfg.organization or cfg.project:
            out[upstream] = Credentials(api_key=api_key, organization=cfg.organization,
                                        project=cfg.project)
    return out


def allows(principal: Principal, model: str) -> bool:
    """Whether `principal` may use `model` (the name the client asked for)."""
    return _matches(principal.models, model) and _matches(principal.team_models, model)


def _matches(patterns: tuple[str, ...], model: str) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        if is_pattern(pattern):
            if glob_regex(pattern).fullmatch(model) is not None:
                return True
        elif pattern == model:
            return True
    return False
