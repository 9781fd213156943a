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
from aiohttp import ClientHttpProxyError, ClientResponseError, ClientSession, ClientTimeout
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions
from yarl import URL

from llm_gateway.config.proxies import without_credentials


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
        # The proxy, without its credentials: aiohttp names the proxy's URL in its errors,
        # and errors get logged. They go as a header instead, to the proxy alone: on the
        # CONNECT for an https upstream, on the request itself (which the proxy strips) for
        # an http one.
        self.via: URL | None = None
        self._proxy_auth: str | None = None
        if via:
            bare, self._proxy_auth = without_credentials(via)
            self.via = URL(bare)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()  # made lazily, inside the running loop
        headers: Any = request.headers
        proxy_headers = None
        if self._proxy_auth is not None:
            if request.url.scheme == "https":
                proxy_headers = {"Proxy-Authorization": self._proxy_auth}
            else:
                headers = [*request.headers.multi_items(),
                           ("Proxy-Authorization", self._proxy_auth)]
        with map_aiohttp_exceptions():
            try:
                answer = await self.client.request(
                    request.method, URL(str(request.url), encoded=True), headers=headers,
                    data=_payload(request), timeout=_timeout(request), proxy=self.via,
                    proxy_headers=proxy_headers, allow_redirects=False,
                    auto_decompress=False, compress=False,
                ).__aenter__()
            except ClientResponseError as exc:
                if isinstance(exc, ClientHttpProxyError):
                    raise
                # Not HTTP that aiohttp can read (a bad status line, a header past its limit,
                # two lengths): what httpx reports as a protocol error, not a crash.
                raise httpx.RemoteProtocolError(f"unreadable answer: {exc.message}") from None
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode()
        return httpx.Response(answer.status, headers=answer.raw_headers, request=request,
                              stream=AiohttpResponseStream(answer), extensions=extensions)
