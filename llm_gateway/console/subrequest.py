"""In-process sub-requests: the console acts through the gateway's own HTTP API.

A console action becomes an ordinary request to the app (the edge: its routing, auth, limits,
ledger and error shaping), carrying the session's credential in `Authorization` and nothing
of the browser's (cookies dropped). `forward` streams the answer straight back to the browser
and hands the app the browser's own `receive`, so a browser that goes away (the playground's
stop button) is a client disconnect to the gateway, which then cancels the upstream call.
`call` collects a small answer for the console's own use.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.api.context import context

# Browser headers worth passing on; everything else (cookies, CSRF token) stays behind.
_KEPT = {b"content-type", b"accept", b"content-length", b"user-agent"}


def _sub_scope(scope: Scope, method: str, path: str, query: bytes,
               credential: str | None, headers: list[tuple[bytes, bytes]]) -> Scope:
    kept = [(k, v) for k, v in headers if k in _KEPT]
    # The console's request and its sub-request share one id: one story in the request log.
    kept.append((b"x-request-id", context(scope).request_id.encode()))
    if credential is not None:
        kept.append((b"authorization", b"Bearer " + credential.encode()))
    sub = {k: v for k, v in scope.items() if k in ("type", "asgi", "http_version", "scheme",
                                                   "server", "client", "root_path")}
    sub.update(method=method, path=path, raw_path=path.encode(), query_string=query,
               headers=kept, state={})
    return sub


async def forward(app: ASGIApp, scope: Scope, receive: Receive, send: Send, path: str,
                  credential: str | None) -> None:
    """The browser's request, re-addressed to `path` with `credential`, answered as it comes."""

    async def send_out(message: Message) -> None:
        if message["type"] == "http.response.start":
            # The outer edge adds its own request id; the inner one's would be a duplicate.
            message = {**message, "headers": [(k, v) for k, v in message["headers"]
                                              if k != b"x-request-id"]}
        await send(message)

    sub = _sub_scope(scope, scope["method"], path, scope.get("query_string", b""),
                     credential, scope["headers"])
    await app(sub, receive, send_out)


async def call(app: ASGIApp, scope: Scope, method: str, path: str, credential: str | None,
               body: Any = None) -> tuple[int, Any]:
    """A JSON request made by the console itself: (status, decoded JSON body or None)."""
    raw = b"" if body is None else orjson.dumps(body)
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(raw)).encode())]
    sub = _sub_scope(scope, method, path, b"", credential, headers)
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def collect(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(sub, receive, collect)
    data = b"".join(chunks)
    try:
        return status, orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return status, None
