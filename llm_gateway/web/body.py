"""Reading a request body within the configured limits of size and pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from llm_gateway.errors import InvalidRequest, PayloadTooLarge, RequestTimeout


def declared_length(scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise InvalidRequest("Invalid Content-Length header.") from None
    return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")


async def read_body(scope, receive, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as it is known to pass `limit`."""
    length = declared_length(scope)
    if length is not None and length > limit:
        raise _too_large(limit)
    parts = [chunk async for chunk in stream_body(receive, limit)]
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def stream_body(receive, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, for relaying uploads without holding them."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client closed the connection before sending the body.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            yield chunk
        if not message.get("more_body", False):
            return


def paced(receive, seconds: float, min_rate: float = 0.0,
          on_timeout: Callable[[], None] | None = None,
          rate_setting: str = "server.body_min_bytes_per_second"):
    """`receive`, with at most ``seconds`` of waiting for each next piece of the body, and
    (``min_rate`` > 0) the whole body in by ``seconds`` plus one second per ``min_rate`` bytes
    received so far.

    A client that stops sending mid-body would otherwise hold its connection and the reader's
    task until it gives up; one that sends a byte just inside each wait, for as long as its
    body lasts (a 16 MiB one: months). The average rate is Apache's mod_reqtimeout MinRate.
    Past either: ``on_timeout`` (the metric), then a 408 (naming ``rate_setting`` when the rate
    was the bound) that closes the connection (`connection: close`), since the rest of the
    body may still trickle in. Once the body is complete, receive() only waits for the client
    to leave, which may take as long as the response does: no limit then.
    """
    done = False
    started: float | None = None
    received = 0

    async def receive_paced():
        nonlocal done, started, received
        if done:
            return await receive()
        now = time.monotonic()
        if started is None:
            started = now
        wait, by_rate = next_wait(seconds, min_rate, started, received, now)
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                message = await receive()
        except TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise RequestTimeout(_too_slow(seconds, min_rate, rate_setting if by_rate else None),
                                 headers={"connection": "close"}) from None
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            done = True
        return message

    return receive_paced


def next_wait(seconds: float, min_rate: float, since: float, received: int,
              now: float) -> tuple[float, bool]:
    """How long a body's next piece may take: ``seconds`` at most and, with ``min_rate`` > 0,
    no later than ``since`` + ``seconds`` + one second per ``min_rate`` bytes ``received``
    since then (0 or less: already late); and whether the rate is what bounds it."""
    if min_rate > 0:
        left = since + seconds + received / min_rate - now
        if left < seconds:
            return left, True
    return seconds, False


def _too_slow(seconds: float, min_rate: float, rate_setting: str | None) -> str:
    if rate_setting is not None:
        return (f"The request body arrived slower than {min_rate:g} bytes a second on average "
                f"({rate_setting}).")
    return f"The request body did not arrive in time: nothing came for {seconds:g} seconds."
