"""Reading a request body within the configured limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llm_gateway.errors import InvalidRequest, PayloadTooLarge


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
