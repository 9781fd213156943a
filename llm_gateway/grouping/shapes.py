"""A member's Result in the shape it asked for: whole JSON or SSE, from a call or the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from llm_gateway.backends.sse import DONE
from llm_gateway.call import Result
from llm_gateway.grouping.cache import CachedAnswer
from llm_gateway.grouping.replay import Assembly
from llm_gateway.grouping.restream import Renamer, sse_from_body

CACHE_HEADER = "x-lgw-cache"  # hit | miss | coalesced, on every answer grouping touched
ERROR_EVENT = b'data: {"error"'


async def _once(block: bytes) -> AsyncIterator[bytes]:
    yield block


def whole_result(result: Result, want_stream: bool, headers: list[tuple[str, str]],
                 kind: str, *, fresh: bool) -> Result:
    """A whole answer in the shape wanted; told as a stream, with a new id when ``fresh``
    (every client but the one whose request made it)."""
    if want_stream and result.status == 200:
        events = sse_from_body(result.body, fresh=fresh)
        if events is not None:
            return Result(200, headers, stream=_once(events), media_type="text/event-stream",
                          backend=result.backend, grouping=kind)
    return Result(result.status, headers, body=result.body, media_type=result.media_type,
                  backend=result.backend, grouping=kind)


def routed(member: Result, source: Result) -> Result:
    """A member's own Result told where the shared answer came from: the deployment, the
    attempts and the fallback of the call it shares (the ledger, the log line)."""
    member.deployment, member.attempts, member.fallback = (
        source.deployment, source.attempts, source.fallback)
    return member


def assembled(assembly: Assembly, status: int, headers: list[tuple[str, str]], kind: str,
              backend: str) -> Result:
    """The whole answer a stream spelled; an error event becomes an error answer."""
    if assembly.error is not None:
        error = assembly.error.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return Result(504 if code == "upstream_timeout" else 502, headers,
                      body=orjson.dumps(assembly.error), backend=backend, grouping=kind)
    return Result(status, headers, body=assembly.body(), backend=backend, grouping=kind)


def complete_stream(blocks: list[bytes]) -> bool:
    """Whether a stream ended as it should: [DONE] last, no error event on the way."""
    return bool(blocks) and blocks[-1].endswith(DONE) and not any(
        ERROR_EVENT in block for block in blocks)


def from_cache(cached: CachedAnswer, want_stream: bool, kind: str) -> Result:
    """A cached answer in the shape the request wants, saying where it came from as the
    answer that was cached did (its backend, deployment and fallback)."""
    headers = [(CACHE_HEADER, kind)]
    if not cached.events:
        result = whole_result(Result(200, body=cached.body, backend=cached.backend),
                              want_stream, headers, kind, fresh=True)
    elif want_stream:  # the stream as it came, pieces and all, under an id of its own
        result = Result(200, headers, stream=_once(Renamer()(cached.body)),
                        media_type="text/event-stream",
                        backend=cached.backend, grouping=kind)
    else:
        assembly = Assembly()
        assembly.feed(cached.body)
        result = assembled(assembly, 200, headers, kind, cached.backend)
    result.deployment, result.fallback = cached.deployment, cached.fallback
    return result
