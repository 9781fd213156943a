"""Server-sent events: re-blocking a byte stream on event boundaries, and building events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import orjson

DONE = b"data: [DONE]\n\n"
# One event's largest size by default. OpenAI's events are small, but an image's base64 (a
# partial image, or the final one repeated in the Responses API's `response.completed`) or a
# big tool-call argument can reach several MB in one event; 16 MiB leaves room for those while
# bounding what one stream holds.
MAX_EVENT_BYTES = 16 * 1024 * 1024
_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
_OVERLAP = 3  # a separator cut by a read leaves at most this many of its bytes before the cut


class EventTooLarge(Exception):
    """An event grew past the bound without ending; the stream cannot go on."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event grew past {limit} bytes without ending")
        self.limit = limit


async def event_blocks(
    chunks: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES
) -> AsyncGenerator[bytes, None]:
    """Yield byte blocks that each end on an SSE event boundary.

    Network reads cut events anywhere; downstream layers (fan-out, usage counting) need whole
    events. Several events that arrive together stay one block, so the common case costs one
    search for the last boundary and no copies. An event cut across reads is kept as a list
    of pieces: each read is searched once (plus the few bytes before it, where a separator may
    have been cut) and the pieces are joined once, so a large event costs linear time.
    EventTooLarge once the unfinished event passes ``max_event_bytes``.
    """
    pending: list[bytes] = []  # the unfinished event's pieces; never holds a boundary
    size = 0
    tail = b""  # pending's last bytes
    async for chunk in chunks:
        if not chunk:
            continue
        cut = _last_boundary(chunk)
        if pending:
            seam = tail + chunk[:_OVERLAP]
            at_seam = _last_boundary(seam) - len(tail)
            cut = max(cut, at_seam)
            if cut <= 0:
                pending.append(chunk)
                size += len(chunk)
                tail = (tail + chunk)[-_OVERLAP:]
                if size > max_event_bytes:
                    raise EventTooLarge(max_event_bytes)
                continue
            pending.append(chunk[:cut])
            block = b"".join(pending)
        elif cut < 0:
            block = b""
            cut = 0
        else:
            block = chunk if cut == len(chunk) else chunk[:cut]
        rest = chunk[cut:] if cut < len(chunk) else b""
        pending = [rest] if rest else []
        size = len(rest)
        tail = rest[-_OVERLAP:]
        if size > max_event_bytes:
            raise EventTooLarge(max_event_bytes)
        if block:
            yield block
    if pending:
        yield b"".join(pending)


def _last_boundary(data: bytes) -> int:
    """Index just past the last blank line (the end of an event), or -1."""
    best = -1
    for sep in _SEPARATORS:
        i = data.rfind(sep)
        if i >= 0 and i + len(sep) > best:
            best = i + len(sep)
    return best


def ends_stream(block: bytes) -> bool:
    """Whether the block holds the `data: [DONE]` event (a line of its own: in a JSON event
    the same text would sit inside a string, on the `data:` line of that event)."""
    at = block.find(b"data: [DONE]")
    while at >= 0:
        if at == 0 or block[at - 1] in b"\r\n":
            return True
        at = block.find(b"data: [DONE]", at + 1)
    return False


def error_event(message: str, *, type_: str = "server_error", code: str | None = None) -> bytes:
    """An OpenAI-shaped error as an SSE data event, for failures after a stream has begun."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
