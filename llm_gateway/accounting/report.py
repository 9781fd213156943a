"""Usage summed from the ledger: by team, key, model, deployment or day, filtered by time,
team, key and model. Used by the admin API and `llm-gateway usage`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from llm_gateway.accounting.record import TABLE
from llm_gateway.storage.database import Executor

GroupBy = Literal["team", "key", "model", "deployment", "day"]
GROUP_BY: tuple[str, ...] = ("team", "key", "model", "deployment", "day")
_COLUMN = {"team": "team", "key": "key_id", "model": "model", "deployment": "deployment"}
DAY_SECONDS = 86400

SUMS = (
    "COUNT(*) AS requests,"
    " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
    " COALESCE(SUM(completion_tokens), 0) AS completion_tokens,"
    " COALESCE(SUM(cached_tokens), 0) AS cached_tokens,"
    " COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS total_tokens,"
    " COALESCE(SUM(cost), 0) AS cost,"
    " COALESCE(SUM(saved_tokens), 0) AS saved_tokens,"
    " COALESCE(SUM(partial), 0) AS partial_requests,"
    # Routing: requests that tried more than one deployment or model, and those answered by
    # a fallback model (a coalesced answer shares its leader's fallback, not its attempts).
    " COALESCE(SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END), 0) AS retried_requests,"
    " COALESCE(SUM(CASE WHEN fallback_reason IS NULL THEN 0 ELSE 1 END), 0)"
    " AS fallback_requests"
)
INT_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
              "total_tokens", "saved_tokens", "partial_requests", "retried_requests",
              "fallback_requests")


@dataclass(frozen=True)
class UsageQuery:
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    team: str | None = None
    key_id: str | None = None
    model: str | None = None  # the name asked for
    group_by: GroupBy | None = None  # None: one row, the totals


def _where(query: UsageQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for clause, value in (("time >= ?", query.since), ("time < ?", query.until),
                          ("team = ?", query.team), ("key_id = ?", query.key_id),
                          ("model = ?", query.model)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def usage_report(db: Executor, query: UsageQuery) -> list[dict[str, Any]]:
    """Rows of sums: requests, prompt/completion/cached/total tokens, cost, saved tokens,
    partial, retried and fallback requests, with the group's value first (`team`, `key_id`,
    `model`, `deployment` or `day`, YYYY-MM-DD in UTC); ordered by the group value (days
    ascending; no team, key or deployment last)."""
    where, args = _where(query)
    if query.group_by is None:
        rows = await db.fetch(f"SELECT {SUMS} FROM {TABLE}{where}", *args)
        return [_clean(r) for r in rows]
    if query.group_by == "day":
        # Whole UTC days as an epoch-day number. SQLite's CAST truncates (times are
        # positive), PostgreSQL's rounds, and SQLite may lack FLOOR.
        group = (f"CAST(time / {DAY_SECONDS} AS INTEGER)" if db.dialect == "sqlite"
                 else f"CAST(FLOOR(time / {DAY_SECONDS}) AS BIGINT)")
        rows = await db.fetch(f"SELECT {group} AS day, {SUMS} FROM {TABLE}{where}"
                              f" GROUP BY {group} ORDER BY day", *args)
        return [{**_clean(r), "day": _day(r["day"])} for r in rows]
    if query.group_by not in _COLUMN:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    column = _COLUMN[query.group_by]
    rows = await db.fetch(f"SELECT {column}, {SUMS} FROM {TABLE}{where} GROUP BY {column}",
                          *args)
    # Sorted here: the dialects disagree on where NULL (no team, no key) goes.
    rows.sort(key=lambda r: (r[column] is None, r[column] or ""))
    return [_clean(r) for r in rows]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Sums as ints and a float whatever the dialect returns (Decimal, float or int)."""
    out = dict(row)
    for name in INT_FIELDS:
        out[name] = int(out[name] or 0)
    out["cost"] = float(out["cost"] or 0)
    return out


def _day(number: Any) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            + dt.timedelta(days=int(number))).date().isoformat()
