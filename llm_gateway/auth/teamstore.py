"""Teams: the config file's (read-only) and the database's (admin API, CLI), one view of both.

The one place team rules live; the admin API and `llm-gateway teams` both call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from llm_gateway.auth.records import (
    Conflict,
    TeamRecord,
    access_changes,
    budget_column,
    budget_from,
    dumps,
    endpoints_from,
    grouping_from,
    known_fields,
    limits_column,
    limits_from,
    loads,
    models_from,
    team_settings_json,
    upstreams_from,
)
from llm_gateway.config.access import TeamConfig
from llm_gateway.config.checks import team_name
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest, NotFound, ServiceUnavailable

_SETTINGS = ("models", "endpoints", "limits", "budget", "upstreams", "grouping")
_COLUMNS = ("name, models, limits, budget, upstreams, team_grouping, created_at, updated_at,"
            " endpoints")


class TeamStore:
    def __init__(
        self,
        db: Any,
        config_teams: Mapping[str, TeamConfig],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db  # storage.Database, or None: config teams only, read-only
        self.config_teams = dict(config_teams)
        self.clock = clock

    # --- reads --------------------------------------------------------------------------------

    async def find(self, name: str) -> TeamConfig | None:
        """The team's settings, or None when no such team exists (the hot path's miss)."""
        team = self.config_teams.get(name)
        if team is not None or self.db is None:
            return team
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM auth_teams WHERE name = ?", name)
        return None if row is None else _record(row).config

    async def exists(self, name: str) -> bool:
        return await self.find(name) is not None

    async def get(self, name: str) -> TeamRecord:
        record = await self._lookup(name)
        if record is None:
            raise NotFound(f"No team named '{clip(name)}'.", param="team", code="team_not_found")
        return record

    async def list(self) -> list[TeamRecord]:
        records = [TeamRecord(team, source="config") for team in self.config_teams.values()]
        counts: dict[str, int] = {}
        if self.db is not None:
            rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM auth_teams ORDER BY name")
            records += [_record(row) for row in rows]
            for row in await self.db.fetch(
                "SELECT team, COUNT(*) AS n FROM auth_keys"
                " WHERE team IS NOT NULL AND revoked_at IS NULL GROUP BY team"
            ):
                counts[row["team"]] = int(row["n"])
        return [TeamRecord(r.config, r.source, r.created_at, r.updated_at,
                           key_count=counts.get(r.name, 0)) for r in records]

    # --- writes -------------------------------------------------------------------------------

    async def create(self, fields: Mapping[str, Any]) -> TeamRecord:
        db = self._writable()
        name = fields.get("name")
        problem = team_name(name) if isinstance(name, str) else "must be a string"
        if problem is not None or not isinstance(name, str):  # as the config file's teams
            raise InvalidRequest(f"'name' {problem}.", param="name")
        known_fields(fields, {"name", *_SETTINGS})
        if await self.exists(name):
            raise Conflict(f"A team named '{name}' already exists.", param="name")
        team = _apply(TeamConfig(name=name), fields)
        now = self.clock()
        await db.execute(
            f"INSERT INTO auth_teams ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            *_row(team), now, now, _endpoints_column(team),
        )
        return TeamRecord(team, "api", now, now)

    async def update(self, name: str, fields: Mapping[str, Any]) -> TeamRecord:
        if name in self.config_teams:
            raise Conflict(f"Team '{name}' is defined in the config file and is read-only "
                           "here; change it there.", param="team", code="team_read_only")
        db = self._writable()
        known_fields(fields, set(_SETTINGS))
        async with db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {_COLUMNS} FROM auth_teams WHERE name = ?", name)
            if row is None:
                raise NotFound(f"No team named '{clip(name)}'.", param="team",
                               code="team_not_found")
            current = _record(row)
            team = _apply(current.config, fields)
            now = self.clock()
            _, *settings = _row(team)
            await tx.execute(
                "UPDATE auth_teams SET models = ?, limits = ?, budget = ?, upstreams = ?,"
                " team_grouping = ?, updated_at = ?, endpoints = ? WHERE name = ?",
                *settings, now, _endpoints_column(team), name,
            )
        return TeamRecord(team, "api", current.created_at, now)

    async def _lookup(self, name: str) -> TeamRecord | None:
        team = self.config_teams.get(name)
        if team is not None:
            return TeamRecord(team, source="config")
        if self.db is None:
            return None
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM auth_teams WHERE name = ?", name)
        return None if row is None else _record(row)

    def _writable(self) -> Any:
        if self.db is None:
            raise ServiceUnavailable("No database is configured, so teams can only be declared "
                                     "in the config file (see storage.url).")
        return self.db


def _apply(team: TeamConfig, fields: Mapping[str, Any]) -> TeamConfig:
    """`team` with the settings present in `fields` replaced (null clears one)."""
    changes = access_changes(fields)
    for name in ("models", "endpoints"):
        if name in changes:
            changes[name] = list(changes[name])  # TeamConfig keeps lists
    if "upstreams" in fields:
        changes["upstreams"] = upstreams_from(fields["upstreams"])
    if "grouping" in fields:
        changes["grouping"] = grouping_from(fields["grouping"])
    return TeamConfig(**{**_settings(team), **changes}, name=team.name)


def _settings(team: TeamConfig) -> dict[str, Any]:
    return {"models": team.models, "endpoints": team.endpoints, "limits": team.limits,
            "budget": team.budget, "upstreams": team.upstreams, "grouping": team.grouping}


def _row(team: TeamConfig) -> tuple[Any, ...]:
    settings = team_settings_json(team)
    return (team.name, dumps(settings["models"]), limits_column(team.limits),
            budget_column(team.budget), dumps(settings["upstreams"]),
            dumps(settings["grouping"]))


def _endpoints_column(team: TeamConfig) -> str | None:
    return dumps(list(team.endpoints)) if team.endpoints else None


def _record(row: Mapping[str, Any]) -> TeamRecord:
    team = TeamConfig(
        name=row["name"],
        models=list(models_from(loads(row["models"]))),
        endpoints=list(endpoints_from(loads(row["endpoints"]))),
        limits=limits_from(loads(row["limits"])),
        budget=budget_from(loads(row["budget"])),
        upstreams=upstreams_from(loads(row["upstreams"])),
        grouping=grouping_from(loads(row["team_grouping"])),
    )
    return TeamRecord(team, "api", row["created_at"], row["updated_at"])
