"""Server-sent events: re-blocking a byte stream on event boundaries, and building events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

DONE = b"data: [DONE]\n\n"


async def event_blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield byte blocks that each end on an SSE event boundary.

    Network reads cut events anywhere; downstream layers (fan-out, usage counting) need whole
    events. Several events that arrive together stay one block, so the common case costs one
    search for the last boundary and no copies.
    """
    pending = b""
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        cut = _last_boundary(chunk)
        if cut < 0:
            pending = chunk
            continue
        pending = chunk[cut:]
        yield chunk[:cut]
    if pending:
        yield pending


def _last_boundary(data: bytes) -> int:
    """Index just past the last blank line (the end of an event), or -1."""
    best = -1
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        i = data.rfind(sep)
        if i >= 0 and i + len(sep) > best:
            best = i + len(sep)
    return best


def error_event(message: str, *, type_: str = "server_error", code: str | None = None) -> bytes:
    """An OpenAI-shaped error as an SSE data event, for failures after a stream has begun."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
