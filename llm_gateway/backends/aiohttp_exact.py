"""The aiohttp transport, with each request's URL sent exactly as the gateway built it.

Given a string, aiohttp parses the URL with yarl, which re-normalises it: `%2e%2e` becomes a
resolved `..`, `%7E` becomes `~`, `%2e` in a query becomes `.`. The upstream would then be
asked for another path than the one the gateway checked and routed, and a client's query
would not travel untouched. A `yarl.URL` built with `encoded=True` is sent as is, so this
transport hands aiohttp one of those; the rest (the pooled session, the response stream,
the mapping of aiohttp's errors to httpx's) is httpx-aiohttp's own, used through its API.
"""

from __future__ import annotations

from typing import Any

import httpx
from aiohttp import ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions
from yarl import URL


def _payload(request: httpx.Request) -> Any:
    """What aiohttp should send: the bytes, a streamed body, or nothing."""
    try:
        return request.content or None
    except httpx.RequestNotRead:
        # aiohttp frames a streamed body itself; a second transfer-encoding would be wrong.
        request.headers.pop("transfer-encoding", None)
        return request.stream


def _timeout(request: httpx.Request) -> ClientTimeout:
    wanted = request.extensions.get("timeout", {})
    return ClientTimeout(sock_connect=wanted.get("connect"), sock_read=wanted.get("read"),
                         connect=wanted.get("pool"))


class ExactAiohttpTransport(AiohttpTransport):
    def __init__(self, *, via: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.via = URL(via) if via else None  # the proxy (its credentials go only to it)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()  # made lazily, inside the running loop
        with map_aiohttp_exceptions():
            answer = await self.client.request(
                request.method, URL(str(request.url), encoded=True),
                headers=request.headers, data=_payload(request), timeout=_timeout(request),
                proxy=self.via, allow_redirects=False, auto_decompress=False, compress=False,
            ).__aenter__()
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode()
        return httpx.Response(answer.status, headers=answer.raw_headers, request=request,
                              stream=AiohttpResponseStream(answer), extensions=extensions)
