"""Lists of a collection (`GET /v1/files`, `/v1/batches`, `/v1/vector_stores`...) show only the
caller's objects.

The upstream lists everything its key can see, every team's objects included. The page is
read (at most MAX_LIST_BYTES), its `data` kept to the objects the caller may reach
(auth/ownership.py), and sent on. When too few are left, the next upstream pages are read
(`after` = the last id seen; at most MAX_PAGES upstream calls per client call) until `limit`
objects (at least one when the client gave no limit) are found or the upstream has no more.
`has_more` and `last_id` stay a valid cursor: `after=<last_id>` (or the last object's id, as
the SDKs use) continues where this page stopped. Paging backwards (`before=`) is answered
from one upstream page. Pages are asked for uncompressed (passthrough_owners.check); one that
cannot be read whole is a 502, never sent unfiltered.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.types import Scope

from llm_gateway.auth.ownership import Owners
from llm_gateway.call import Result
from llm_gateway.errors import UpstreamUnavailable
from llm_gateway.principal import Principal

MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_PAGES = 10
_LIMIT_CAP = 10_000  # the largest `limit` OpenAI accepts (GET /v1/files)

Fetch = Callable[[dict], Awaitable[Result]]  # forwards a copy of the request's scope


async def filtered(owners: Owners, principal: Principal, kind: str, scope: Scope,
                   result: Result,
                   fetch: Fetch) -> Result:
    """`result` (an upstream's answer to a list call) with only the caller's objects."""
    if not owners.enabled or not 200 <= result.status < 300:
        return result
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    params = dict(query)
    first = page = await _page(result)
    wanted = _limit(params.get("limit"))
    forward = "before" not in params
    kept: list[Any] = []
    cursor: str | None = None  # the last upstream id looked at
    for fetched in range(1, MAX_PAGES + 1):
        data = [item for item in page["data"] if _has_id(item)]
        mine = await owners.visible(kind, [item["id"] for item in data], principal)
        has_more = page.get("has_more") is True
        for index, item in enumerate(data):
            cursor = item["id"]
            if cursor in mine:
                kept.append(item)
                if wanted is not None and len(kept) >= wanted:
                    has_more = has_more or index < len(data) - 1
                    break
        else:
            if isinstance(page.get("last_id"), str):
                cursor = page["last_id"]
            if (has_more and forward and cursor is not None and fetched < MAX_PAGES
                    and len(kept) < (wanted or 1)):
                after = [(k, v) for k, v in query if k != "after"] + [("after", cursor)]
                page = await _page(await fetch(_asking(scope, after)))
                continue
        break
    answer = {**first, "data": kept, "has_more": has_more}
    if "first_id" in first:
        answer["first_id"] = kept[0]["id"] if kept else None
    # Continuing after the last object shown is always right; only a page left empty after
    # MAX_PAGES upstream pages needs the upstream's own cursor (some other owner's id).
    if "last_id" in first or kept:
        answer["last_id"] = kept[-1]["id"] if kept else cursor if has_more else None
    return _whole(result, orjson.dumps(answer))


async def _page(result: Result) -> dict[str, Any]:
    """A list page as JSON (asked for uncompressed: passthrough_owners.check)."""
    if not 200 <= result.status < 300:
        await result.aclose()
        raise UpstreamUnavailable("The upstream failed while the gateway read the next page of "
                                  f"a list (status {result.status}); please retry.")
    return _parsed(await _read(result), _encoding(result))


async def _read(result: Result) -> bytes:
    if result.stream is None:
        return result.body
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in result.stream:
            size += len(chunk)
            if size > MAX_LIST_BYTES:
                raise UpstreamUnavailable(
                    f"The list is larger than the gateway can filter ({MAX_LIST_BYTES} bytes); "
                    "ask for fewer objects with `limit`.", code="list_too_large")
            parts.append(chunk)
    finally:
        await result.aclose()
    return b"".join(parts)


def _parsed(raw: bytes, encoding: str | None) -> dict[str, Any]:
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else
                                      zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, MAX_LIST_BYTES)
        except zlib.error:
            raw = b""
        if not inflater.eof:
            raise _bad("it is larger than the gateway can filter or cut short")
    elif encoding not in (None, "", "identity"):
        raise _bad(f"it came compressed as {encoding[:40]!r} although asked for uncompressed")
    try:
        page = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad("it is not JSON") from None
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise _bad("it has no `data` list")
    return page


def _bad(why: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"The upstream's list could not be filtered: {why}.",
                               code="list_unreadable")


def _asking(scope: Scope, query: list[tuple[str, str]]) -> dict:
    """A copy of the request's scope (its headers asking for an uncompressed answer) for the
    next upstream page."""
    return {**scope, "query_string": urlencode(query).encode("latin-1")}


def _whole(result: Result, body: bytes) -> Result:
    result.headers = [(k, v) for k, v in result.headers
                      if k not in ("content-length", "content-encoding")]
    result.body, result.stream, result.close = body, None, None
    result.media_type = "application/json"
    return result


def _encoding(result: Result) -> str | None:
    for key, value in result.headers:
        if key == "content-encoding":
            return value.strip().lower()
    return None


def _limit(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return min(max(int(value), 1), _LIMIT_CAP)


def _has_id(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), str)
