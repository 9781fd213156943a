"""GET /admin/usage: the ledger's report (accounting/report.py), filtered and grouped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from starlette.requests import Request

from llm_gateway.accounting.report import GroupBy, UsageQuery
from llm_gateway.api.admin_auth import admin_state, json_response
from llm_gateway.auth.times import in_range, parse_instant
from llm_gateway.errors import InvalidRequest, ServiceUnavailable
from llm_gateway.web.responses import BytesResponse

GROUP_BY = ("team", "key", "model", "deployment", "day")


async def usage(request: Request) -> BytesResponse:
    state = admin_state(request)
    from llm_gateway.accounting.report import usage_report

    query = usage_query(request.query_params, state.auth.clock())
    if state.db is None:
        raise ServiceUnavailable("Usage needs the ledger's database, and none is configured "
                                 "(accounting.enabled, storage.url).")
    rows = await usage_report(state.db, query)
    return json_response({
        "object": "list",
        "group_by": query.group_by,
        "since": None if query.since is None else int(query.since),
        "until": None if query.until is None else int(query.until),
        "data": rows,
    })


def usage_query(params: Mapping[str, str], now: float) -> UsageQuery:
    """The report's filters from a query string (the admin API's and the console's), checked."""
    since = _instant(params.get("since"), now, "since")
    until = _instant(params.get("until"), now, "until")
    if since is not None and until is not None and until <= since:
        raise InvalidRequest("'until' must be after 'since'.", param="until")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUP_BY:
        raise InvalidRequest(f"Invalid value for 'group_by': expected one of "
                             f"{', '.join(GROUP_BY)}.", param="group_by")
    return UsageQuery(since=since, until=until, team=params.get("team") or None,
                      key_id=params.get("key_id") or None, model=params.get("model") or None,
                      group_by=cast("GroupBy | None", group_by))  # checked above


def _instant(value: str | None, now: float, param: str) -> float | None:
    if not value:
        return None
    try:
        number = float(value)  # epoch seconds arrive as text in a query string
    except ValueError:
        return parse_instant(value, now, param=param, future=False)
    return in_range(number, param)  # 1e20 or nan: a 400, not a report that cannot be shown
