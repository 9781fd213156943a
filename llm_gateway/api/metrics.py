"""GET /metrics: Prometheus text format (see metrics/exposition.py)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from llm_gateway.api.context import context
from llm_gateway.errors import NotFound
from llm_gateway.metrics.exposition import CONTENT_TYPE
from llm_gateway.web.responses import BytesResponse

_HEADERS = [(b"content-type", CONTENT_TYPE.encode()), (b"cache-control", b"no-store")]


async def get_metrics(request: Request) -> BytesResponse:
    state = context(request.scope).state
    if state.exposition is None:
        raise NotFound("Metrics are disabled (metrics.enabled: false).")
    if state.recorder is not None:
        state.recorder.flush()  # on the loop, which owns the pending sums
    # Off the event loop: with several processes a scrape reads every process's files.
    body = await asyncio.to_thread(state.exposition.render)
    return BytesResponse(200, body, list(_HEADERS))
