"""Connection handling of the fake OpenAI upstream: tracking, severing, waking, streaming.

ASGI gives an app no way to close its connection without answering, so the fake keeps each
connection's transport (:func:`_tracking_protocol`) to cut it off on purpose; streamed bodies
are sent event by event so that a client going away, or an injected drop, is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

if TYPE_CHECKING:
    from llm_gateway.testing.fake_failures import _StreamFault

Peer = tuple[str, int]


def _tracking_protocol(transports: dict[Peer, asyncio.Transport]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, noting each connection's transport by peer address.

    ASGI gives an app no way to close its connection without answering; the fake needs
    that to simulate an upstream that dies mid-request, so it finds the transport by the
    scope's ``client`` (uvicorn fills it from the same peer address).
    """
    base: Any = AutoHTTPProtocol

    class TrackingProtocol(base):
        _fake_peer: Peer | None = None
        _fake_transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                self._fake_peer = (str(peer[0]), int(peer[1]))
                self._fake_transport = transport
                transports[self._fake_peer] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            # Only this connection's own entry: a quickly reused port may already map to a
            # newer connection's transport.
            peer = self._fake_peer
            if peer is not None and transports.get(peer) is self._fake_transport:
                del transports[peer]
            super().connection_lost(exc)

    return TrackingProtocol


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pause(seconds: float, wake: asyncio.Event) -> None:
    """Sleep, cut short when ``wake`` is set (client gone, or the server stopping)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), seconds)


class _DropConnection(Response):
    """Closes the connection without sending a single byte of response."""

    def __init__(self, owner: FakeConnections) -> None:
        super().__init__()
        self._owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._owner._sever(scope, _wait_disconnect(receive))


class _RawStatus(Response):
    """A response with a status uvicorn refuses to write (outside 100-599), written on the
    connection by hand; the connection is closed after it."""

    def __init__(self, owner: FakeConnections, status: int, body: bytes) -> None:
        super().__init__()
        self._owner = owner
        self._raw = (f"HTTP/1.1 {status} Odd\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        self._raw += body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        transport = self._owner._transports.get((str(client[0]), int(client[1]))) \
            if client else None
        if transport is None:
            raise RuntimeError("fake upstream: cannot find the connection to write on")
        transport.write(self._raw)
        await self._owner._sever(scope, _wait_disconnect(receive))


class _EventStream(Response):
    """An SSE body sent event by event, noticing when the client goes away mid-stream."""

    media_type = "text/event-stream"

    def __init__(self, owner: FakeConnections, events: list[bytes], droppable: int) -> None:
        # Not Response.__init__: it would announce a content-length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self._owner = owner
        self._events = events
        self._droppable = droppable  # events before the terminal ones
        self._delay = owner.chunk_delay
        self.drop_after: int | None = None
        self.stall = False

    def dropping(self, after: int) -> _EventStream:
        self.drop_after = max(0, min(after, self._droppable))
        return self

    def faulty(self, fault: _StreamFault) -> _EventStream:
        if fault.huge_event:
            self._events = [_padding_event(fault.huge_event), *self._events]
            self._droppable += 1
        self.stall = fault.stall_after_done
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self._owner
        wake = owner._waker()
        gone = False

        async def watch() -> None:
            nonlocal gone
            await _wait_disconnect(receive)
            gone = True
            wake.set()

        watcher = asyncio.create_task(watch())
        last = len(self._events) - 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            for i, event in enumerate(self._events):
                if i == self.drop_after:
                    await owner._sever(scope, watcher)
                    return
                if i and self._delay > 0:
                    await _pause(self._delay, wake)
                if gone:
                    owner._note_disconnect()
                    return
                # The terminal event ends the body in the same write, so a client that stops
                # reading right after [DONE] is not mistaken for one that went away.
                await send({"type": "http.response.body", "body": event,
                            "more_body": i < last or self.stall})
            if self.stall:
                await _pause(3600, wake)  # until the client leaves, or the fake stops
                if gone:
                    owner._note_disconnect()
                    return
                await send({"type": "http.response.body", "body": b""})
        except OSError:  # servers on ASGI spec >= 2.4 raise this once the client is gone
            owner._note_disconnect()
        except asyncio.CancelledError:
            owner._note_disconnect()
            raise
        finally:
            watcher.cancel()
            owner._wakers.discard(wake)


def _padding_event(size: int) -> bytes:
    head = b'data: {"id":"chatcmpl-pad","object":"chat.completion.chunk","choices":[{"index":0,' \
        b'"delta":{"content":"'
    end = b'"},"finish_reason":null}]}\n\n'
    return head + b"x" * max(0, size - len(head) - len(end)) + end


class FakeConnections:
    """The connection side of :class:`~llm_gateway.testing.fake_upstream.FakeUpstream`."""

    disconnects: int
    chunk_delay: float
    _lock: threading.Lock
    _transports: dict[Peer, asyncio.Transport]
    _wakers: set[asyncio.Event]
    _stopping: bool

    def _wake_all(self) -> None:
        self._stopping = True
        for wake in self._wakers:
            wake.set()

    def _waker(self) -> asyncio.Event:
        wake = asyncio.Event()
        if self._stopping:
            wake.set()
        self._wakers.add(wake)
        return wake

    def _abort_all(self) -> None:
        for transport in list(self._transports.values()):
            transport.abort()

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    async def _sever(self, scope: Scope, disconnected: Awaitable[None]) -> None:
        """Close the request's connection abruptly and wait until uvicorn has noticed."""
        client = scope.get("client")
        transport = self._transports.get((str(client[0]), int(client[1]))) if client else None
        if transport is None:
            # Unknown server protocol: an exception is the next best way to cut the connection.
            raise RuntimeError("fake upstream: cannot find the connection to drop")
        # close(), not abort(): already-sent events must reach the client before the FIN.
        transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected, 5)
