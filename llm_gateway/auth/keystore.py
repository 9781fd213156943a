"""Gateway keys in the database: create, list, change, revoke, rotate, and the hot path's find.

The one place key rules live; the admin API and `llm-gateway keys` both call it. The key
itself exists only in the return value of `create` and `rotate`: what is stored is its keyed
hash and last four characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from llm_gateway.auth.records import (
    Conflict,
    KeyRecord,
    access_changes,
    budget_column,
    budget_from,
    dumps,
    endpoints_from,
    known_fields,
    limits_column,
    limits_from,
    loads,
    models_from,
)
from llm_gateway.auth.secret import KeyHasher, LazyHasher, last4, new_key, new_key_id
from llm_gateway.auth.teamstore import TeamStore
from llm_gateway.auth.times import parse_instant
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest, NotFound

_COLUMNS = ("id, name, team, models, limits, budget, expires_at, disabled, revoked_at,"
            " created_at, updated_at, last4, endpoints")
_SETTINGS = {"name", "team", "models", "endpoints", "limits", "budget", "expires_at",
             "disabled"}


class KeyStore:
    def __init__(
        self,
        db: Any,
        hasher: KeyHasher | LazyHasher,
        teams: TeamStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db  # storage.Database
        self.hasher = hasher
        self.teams = teams
        self.clock = clock

    async def find(self, key: str) -> KeyRecord | None:
        """The record of a presented key, or None (the authenticator's cache miss)."""
        return await self.find_hash(self.hasher.hash(key))

    async def find_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM auth_keys WHERE key_hash = ?", key_hash)
        return None if row is None else _record(row)

    async def get(self, key_id: str) -> KeyRecord:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM auth_keys WHERE id = ?", key_id)
        if row is None:
            raise _not_found(key_id)
        return _record(row)

    async def list(self, *, team: str | None = None, include_inactive: bool = False
                   ) -> list[KeyRecord]:
        where, args = [], []
        if team is not None:
            where.append("team = ?")
            args.append(team)
        if not include_inactive:
            # Expired keys are filtered below: "now" is ours, not the database server's.
            where.append("revoked_at IS NULL AND disabled = 0")
        sql = f"SELECT {_COLUMNS} FROM auth_keys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        records = [_record(row) for row in await self.db.fetch(sql + " ORDER BY created_at, id",
                                                               *args)]
        if include_inactive:
            return records
        now = self.clock()
        return [r for r in records if r.status(now) == "active"]

    async def create(self, fields: Mapping[str, Any]) -> tuple[KeyRecord, str]:
        """A new key: its record, and the key itself (shown this once, never stored)."""
        known_fields(fields, _SETTINGS)
        if not isinstance(fields.get("name"), str) or not fields["name"].strip():
            raise InvalidRequest("Missing required parameter: 'name'.", param="name",
                                 code="missing_required_parameter")
        now = self.clock()
        record = await self._apply(KeyRecord(id=new_key_id(), name="", team=None,
                                             created_at=now, updated_at=now), fields, now)
        key = new_key()
        record = replace(record, last4=last4(key))
        await self.db.execute(
            f"INSERT INTO auth_keys (key_hash, {_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.hasher.hash(key), *_row(record),
        )
        return record, key

    async def update(self, key_id: str, fields: Mapping[str, Any]) -> KeyRecord:
        known_fields(fields, _SETTINGS)
        async with self.db.transaction() as tx:
            current = await self._live(tx, key_id)
            now = self.clock()
            record = replace(await self._apply(current, fields, now), updated_at=now)
            _, *values = _row(record)
            await tx.execute(
                "UPDATE auth_keys SET name = ?, team = ?, models = ?, limits = ?, budget = ?,"
                " expires_at = ?, disabled = ?, revoked_at = ?, created_at = ?,"
                " updated_at = ?, last4 = ?, endpoints = ? WHERE id = ?",
                *values, key_id,
            )
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        """For good: the row stays (usage reports still name the key), the key never works."""
        now = self.clock()
        async with self.db.transaction() as tx:
            current = await self._live(tx, key_id)
            await tx.execute("UPDATE auth_keys SET revoked_at = ?, updated_at = ? WHERE id = ?",
                             now, now, key_id)
        return replace(current, revoked_at=now, updated_at=now)

    async def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new secret for the same id and settings; the old key stops matching at once."""
        key = new_key()
        now = self.clock()
        async with self.db.transaction() as tx:
            current = await self._live(tx, key_id)
            await tx.execute(
                "UPDATE auth_keys SET key_hash = ?, last4 = ?, updated_at = ? WHERE id = ?",
                self.hasher.hash(key), last4(key), now, key_id)
        return replace(current, last4=last4(key), updated_at=now), key

    async def _live(self, tx: Any, key_id: str) -> KeyRecord:
        row = await tx.fetchone(f"SELECT {_COLUMNS} FROM auth_keys WHERE id = ?", key_id)
        if row is None:
            raise _not_found(key_id)
        record = _record(row)
        if record.revoked_at is not None:
            raise Conflict(f"Key '{key_id}' has been revoked and can no longer be changed.",
                           param="key_id", code="key_revoked")
        return record

    async def _apply(self, record: KeyRecord, fields: Mapping[str, Any], now: float
                     ) -> KeyRecord:
        """`record` with the settings present in `fields` (null clears one), validated."""
        changes = access_changes(fields)
        if "name" in fields:
            name = fields["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                raise InvalidRequest("'name' must be a non-empty string of at most 200 "
                                     "characters.", param="name")
            changes["name"] = name.strip()
        if "team" in fields:
            team = fields["team"]
            if team is not None and (not isinstance(team, str)
                                     or not await self.teams.exists(team)):
                raise InvalidRequest(
                    f"Unknown team {clip(team)!r}: declare it under `teams:` in the config or "
                    "create it first (POST /admin/teams, `llm-gateway teams create`).",
                    param="team", code="team_not_found")
            changes["team"] = team
        if "expires_at" in fields:
            changes["expires_at"] = _expiry(fields["expires_at"], now)
        if "disabled" in fields:
            if not isinstance(fields["disabled"], bool):
                raise InvalidRequest("'disabled' must be a boolean.", param="disabled")
            changes["disabled"] = fields["disabled"]
        return replace(record, **changes)


def _expiry(value: Any, now: float) -> float | None:
    if value is None:
        return None
    expires = parse_instant(value, now, param="expires_at", future=True)
    if expires <= now:
        raise InvalidRequest("'expires_at' must be in the future.", param="expires_at")
    return expires


def _not_found(key_id: str) -> NotFound:
    return NotFound(f"No key with id '{clip(key_id)}'.", param="key_id", code="key_not_found")


def _row(r: KeyRecord) -> tuple[Any, ...]:
    """Values in `_COLUMNS` order."""
    return (r.id, r.name, r.team, dumps(list(r.models)), limits_column(r.limits),
            budget_column(r.budget), r.expires_at, int(r.disabled), r.revoked_at,
            float(r.created_at), float(r.updated_at), r.last4,
            dumps(list(r.endpoints)) if r.endpoints else None)


def _record(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        team=row["team"],
        models=models_from(loads(row["models"])),
        limits=limits_from(loads(row["limits"])),
        budget=budget_from(loads(row["budget"])),
        expires_at=row["expires_at"],
        disabled=bool(row["disabled"]),
        revoked_at=row["revoked_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last4=row["last4"],
        endpoints=endpoints_from(loads(row["endpoints"])),
    )
