"""Reading a request body within the configured limits of size and pace."""

from __future__ import annotations

import asyncio
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


def paced(receive, seconds: float, on_timeout: Callable[[], None] | None = None):
    """`receive`, with at most ``seconds`` of waiting for each next piece of the body.

    A client that stops sending mid-body would otherwise hold its connection and the reader's
    task until it gives up. Past the wait: ``on_timeout`` (the metric), then a 408 that closes
    the connection (`connection: close`), since the rest of the body may still trickle in.
    Once the body is complete, receive() only waits for the client to leave, which may take
    as long as the response does: no limit then.
    """
    done = False

    async def receive_paced():
        nonlocal done
        if done:
            return await receive()
        try:
            async with asyncio.timeout(seconds):
                message = await receive()
        except TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise RequestTimeout(
                f"The request body did not arrive in time: nothing came for {seconds:g} "
                "seconds.", headers={"connection": "close"}) from None
        if not message.get("more_body", False):
            done = True
        return message

    return receive_paced
