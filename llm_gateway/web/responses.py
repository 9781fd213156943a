"""The two response shapes the gateway sends: a whole body, or a stream that watches its client.

Both are plain ASGI callables working on raw header lists, so upstream headers (repeated ones
included) cross without being re-parsed into mappings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

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

    async def __call__(self, scope, receive, send) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class StreamResponse:
    """Sends blocks as they come; a client that goes away cancels the producer at once.

    Waiting for the next send to fail would leave an upstream generating (and billing) tokens
    for nobody until its next chunk; so a watcher task listens for the disconnect instead.
    """

    __slots__ = ("blocks", "headers", "on_close", "on_gone", "status")

    def __init__(
        self,
        status: int,
        blocks: AsyncIterator[bytes],
        headers: RawHeaders,
        on_close: Callable[[], Awaitable[None]] | None = None,
        on_gone: Callable[[], bool] | None = None,
    ) -> None:
        self.status = status
        self.blocks = blocks
        self.headers = headers
        self.on_close = on_close
        self.on_gone = on_gone  # asked before cancelling: False means the producer ends itself

    async def __call__(self, scope, receive, send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone: list[bool] = []  # a plain flag: asyncio.Event costs more than it gives here

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.append(True)
                    if self.on_gone is None or self.on_gone():
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": self.headers})
            async for block in self.blocks:
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
                await self.blocks.aclose()  # type: ignore[attr-defined]
            if self.on_close is not None:
                with contextlib.suppress(Exception):
                    await self.on_close()


def error_response(exc: BaseException) -> BytesResponse:
    """The one place an exception becomes an OpenAI-shaped error response."""
    if not isinstance(exc, GatewayError):
        log.error("unhandled error", exc_info=exc)
        exc = InternalError("The server had an error while processing your request.")
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    return BytesResponse(exc.status, exc.body_bytes(), headers)
