"""The console's reads: usage (JSON and CSV), keys, teams, budgets and a chat's price.

Reads only, through the same code the admin API and the CLI use (accounting/report.py, the
key and team stores), so the console's numbers are `llm-gateway usage`'s. A gateway-key
session is confined to its team (or, without a team, to its own key) whatever it asks for.
Every write goes through /admin/... instead (see app.py).
"""

from __future__ import annotations

import io
from typing import Any

from starlette.requests import Request

from llm_gateway.accounting.report import UsageQuery, usage_report
from llm_gateway.accounting.report_csv import write_csv
from llm_gateway.api.admin_usage import usage_query
from llm_gateway.api.state import State
from llm_gateway.config.access import BudgetConfig
from llm_gateway.console.session import Session
from llm_gateway.errors import InvalidRequest, PermissionDenied, ServiceUnavailable
from llm_gateway.limits.budgets import period_bounds
from llm_gateway.usage import Usage


def scoped_query(request: Request, state: State, session: Session) -> UsageQuery:
    query = usage_query(request.query_params, state.auth.clock())
    if session.kind != "key":
        return query
    if session.team is not None:  # its team only, whatever was asked
        return UsageQuery(query.since, query.until, session.team, query.key_id, query.model,
                          query.group_by)
    return UsageQuery(query.since, query.until, None, session.key_id, query.model,
                      query.group_by)


async def usage_rows(state: State, query: UsageQuery) -> list[dict[str, Any]]:
    if state.db is None:
        raise ServiceUnavailable("Usage needs the ledger's database, and none is configured "
                                 "(accounting.enabled, storage.url).")
    return await usage_report(state.db, query)


async def usage_json(request: Request, state: State, session: Session) -> dict[str, Any]:
    query = scoped_query(request, state, session)
    return {"object": "list", "group_by": query.group_by,
            "since": None if query.since is None else int(query.since),
            "until": None if query.until is None else int(query.until),
            "data": await usage_rows(state, query)}


async def usage_csv(request: Request, state: State, session: Session) -> str:
    query = scoped_query(request, state, session)
    out = io.StringIO()
    write_csv(out, await usage_rows(state, query), query.group_by)
    return out.getvalue()


def _keys_store(state: State) -> Any:
    if state.auth.keys is None:
        raise ServiceUnavailable("Keys need a database, and none is configured.")
    return state.auth.keys


async def keys_json(state: State, session: Session) -> list[dict[str, Any]]:
    if session.kind == "local":
        raise PermissionDenied("Sign in to see keys.", code="console_read_only")
    store = _keys_store(state)
    now = state.auth.clock()
    if session.kind == "key" and session.team is None:
        return [(await store.get(session.key_id)).to_json(now)]
    records = await store.list(team=session.team if session.kind == "key" else None,
                               include_inactive=True)
    return [r.to_json(now) for r in records]


async def teams_json(state: State, session: Session) -> list[dict[str, Any]]:
    if session.kind == "local":
        raise PermissionDenied("Sign in to see teams.", code="console_read_only")
    if session.kind == "key":
        return [] if session.team is None else [(await state.auth.teams.get(session.team))
                                                .to_json()]
    return [t.to_json() for t in await state.auth.teams.list()]


async def budgets_json(state: State, session: Session) -> list[dict[str, Any]]:
    """Each team's and key's budget beside what the ledger holds for its current period."""
    if state.db is None or session.kind == "local":
        return []
    out = []
    for team in await teams_json(state, session):
        budget = await state.auth.teams.find(team["name"])
        if budget is not None and budget.budget is not None:
            out.append(await _budget_row(state, "team", team["name"], budget.budget,
                                         UsageQuery(team=team["name"])))
    if state.auth.keys is not None:
        for key in await keys_json(state, session):
            if key["status"] != "active":
                continue
            record = await state.auth.keys.get(key["id"])
            if record.budget is not None:
                out.append(await _budget_row(state, "key", key["id"], record.budget,
                                             UsageQuery(key_id=key["id"])))
    return out


async def _budget_row(state: State, scope: str, name: str, budget: BudgetConfig,
                      query: UsageQuery) -> dict[str, Any]:
    _, start, end = period_bounds(budget.period, state.auth.clock())
    since = start if budget.period != "total" else None
    rows = await usage_rows(state, UsageQuery(since=since, team=query.team,
                                              key_id=query.key_id))
    used = rows[0] if rows else {}
    return {"scope": scope, "name": name, "period": budget.period,
            "tokens_limit": budget.tokens, "cost_limit": budget.cost,
            "tokens_used": used.get("total_tokens", 0), "cost_used": used.get("cost", 0.0),
            "resets_at": None if end is None else int(end)}


def price(request: Request, state: State) -> dict[str, Any]:
    """What a playground answer cost, by the gateway's own price table."""
    params = request.query_params
    try:
        usage = Usage(int(params.get("prompt") or 0), int(params.get("completion") or 0),
                      int(params.get("cached") or 0))
    except ValueError as exc:
        raise InvalidRequest("Token counts must be integers.") from exc
    cost = state.accountant.prices.cost(usage, params.get("served"), params.get("model"))
    return {"cost": cost}
