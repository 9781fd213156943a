"""The two response shapes the gateway sends: a whole body, or a stream that watches its client.

Both are plain ASGI callables working on raw header lists, so upstream headers (repeated ones
included) cross without being re-parsed into mappings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.types import Receive, Scope, Send

from llm_gateway.errors import GatewayError, InternalError

log = logging.getLogger(__name__)

RawHeaders = list[tuple[bytes, bytes]]


def encode_headers(headers: list[tuple[str, str]], media_type: str | None) -> RawHeaders:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k != "content-type"]
    if media_type:
        raw.append((b"content-type", media_type.encode("latin-1")))
    return raw


class BytesResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: RawHeaders) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class Source(Protocol):
    """What a stream response sends: its blocks, then one close (stream/relay.py)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...

    def gone(self) -> bool: ...


class IteratorSource:
    """A plain async iterator of blocks as a `Source` (the local worker's own streams)."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: AsyncIterator[bytes]) -> None:
        self.blocks = blocks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.blocks

    async def aclose(self) -> None:
        await self.blocks.aclose()  # type: ignore[attr-defined]

    def gone(self) -> bool:
        return True


class StreamResponse:
    """Sends blocks as they come; a client that goes away cancels the producer at once.

    Waiting for the next send to fail would leave an upstream generating (and billing) tokens
    for nobody until its next chunk; so a watcher task listens for the disconnect instead
    (unless the source says not now: a shared stream's reader pulling for others).
    """

    __slots__ = ("headers", "source", "status")

    def __init__(self, status: int, source: Source, headers: RawHeaders) -> None:
        self.status = status
        self.source = source
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        source = self.source
        gone: list[bool] = []  # a plain flag: asyncio.Event costs more than it gives here

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.append(True)
                    if source.gone():
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.headers})
            async for block in source:
                await send({"type": "http.response.body", "body": block, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            log.info("client went away mid-stream; cancelled the backend stream")
        except OSError:
            log.info("client connection lost mid-stream")
        finally:
            watcher.cancel()
            with contextlib.suppress(Exception):
                await source.aclose()


class BeforeBody:
    """A whole body, after awaiting what must happen before it is sent."""

    __slots__ = ("first", "response")

    def __init__(self, first: Callable[[], Awaitable[None]], response: BytesResponse) -> None:
        self.first = first
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.first()
        await self.response(scope, receive, send)


def error_response(exc: BaseException) -> BytesResponse:
    """The one place an exception becomes an OpenAI-shaped error response."""
    if not isinstance(exc, GatewayError):
        log.error("unhandled error", exc_info=exc)
        exc = InternalError("The server had an error while processing your request.")
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    return BytesResponse(exc.status, exc.body_bytes(), headers)
