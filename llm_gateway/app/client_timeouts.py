"""Dropping clients that send a request too slowly where uvicorn has no timeout of its own.

uvicorn closes a keep-alive connection that stays idle, but:

- once a request's first bytes have arrived it waits for the rest of its head for ever, so a
  client sending a header line now and then holds a connection (and its memory) as long as it
  likes. Here a request's headers must be complete within `server.header_timeout_seconds` of
  its first byte (the first request's: of the connection's opening). Past that, a client that
  had begun a request gets an OpenAI-shaped 408 and the connection is closed; one that sent
  nothing is just closed, as uvicorn closes an idle one.
- when the app answers before reading the body (an auth failure, a 404), the rest of the body
  is read with no timer at all: each byte cancels the keep-alive timer, and nothing re-arms
  it. Here each next piece of such a body must come within `server.body_timeout_seconds`, and
  the rest of it at `server.body_min_bytes_per_second` on average, as for a body the app reads.

A request's head is bounded in size too: httptools, unlike h11 (uvicorn's
`h11_max_incomplete_event_size`), takes headers of any size, so a fast client could send
megabytes of them. Past `MAX_HEAD_BYTES` it gets a 431 and the connection is closed.

And the open connections are bounded (`server.max_connections`, per process): each holds a
file descriptor and buffers, and past the process's descriptor limit accept() fails for
everyone. A connection past the bound gets an OpenAI-shaped 503 with Retry-After at once and
is closed (`llm_gateway_refused_connections_total`); uvicorn's own `limit_concurrency`
answers plain text.

A body the app reads is timed by the app itself (`web/body.py`). Each drop is counted in
`llm_gateway_slow_clients_total{phase}`. The protocols are uvicorn's own plus these timers;
`llm-gateway serve` names one by its import path (`cli/serve.py`), so that worker processes,
fresh interpreters, load it too, and each reads the timeouts and the metric from the gateway
app it serves. `llm-gateway worker` runs them too, with its own flags (`with_pace`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llm_gateway.config.schema import ServerConfig
from llm_gateway.errors import HeadersTooLarge, RequestTimeout, ServiceUnavailable
from llm_gateway.web.body import next_wait

if TYPE_CHECKING:
    from llm_gateway.api.state import State

# When the app is not the gateway's (then there is no config to read them from): the
# server section's defaults.
_DEFAULTS = ServerConfig()
# A request line and headers; h11's default bound is 16 KiB, nginx's large buffers 4 x 8 KiB.
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Pace:
    """The client bounds (timeouts, open connections), for an app that is not the gateway's
    (a worker's, from its flags)."""

    header_seconds: float = _DEFAULTS.header_timeout_seconds
    body_seconds: float = _DEFAULTS.body_timeout_seconds
    body_rate: float = _DEFAULTS.body_min_bytes_per_second
    max_connections: int = _DEFAULTS.max_connections


P = TypeVar("P", bound=type)


def with_pace(protocol: P, pace: Pace) -> P:
    """``protocol`` (one of the classes below) with ``pace`` instead of the gateway's config."""
    return type(protocol.__name__, (protocol,), {"pace": pace})  # type: ignore[return-value]


def _gateway_state(app: Any) -> State | None:
    """The gateway's State under uvicorn's wrappers (proxy headers, message logger), which
    each keep the app they wrap as `.app`. (Imported here: a worker, which brings its own
    Pace, does not load the gateway.)"""
    from llm_gateway.api.state import State

    for _ in range(8):
        state = getattr(app, "state", None)
        if isinstance(state, State):
            return state
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def _config_pace(state: State) -> Pace:
    server = state.config.server
    return Pace(server.header_timeout_seconds, server.body_timeout_seconds,
                server.body_min_bytes_per_second, server.max_connections)


def _answer(seconds: float) -> bytes:
    error = RequestTimeout(f"The request headers did not arrive within {seconds:g} seconds.")
    return _closing(b"408 Request Timeout", error.body_bytes())


def _head_too_large() -> bytes:
    error = HeadersTooLarge(f"The request headers are larger than {MAX_HEAD_BYTES} bytes.")
    return _closing(b"431 Request Header Fields Too Large", error.body_bytes())


def _too_many(limit: int) -> bytes:
    error = ServiceUnavailable(
        f"The gateway has as many connections open as it takes ({limit}, "
        "server.max_connections); retry shortly.", code="too_many_connections")
    return _closing(b"503 Service Unavailable", error.body_bytes(), b"retry-after: 1\r\n")


def _closing(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"%sconnection: close\r\n\r\n" % (status, len(body), extra)) + body


class _Timers:
    """The two timers; the protocol classes below say when each runs."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _header_timer: asyncio.TimerHandle | None = None
    _header_begun = False  # some of a request's head arrived (else: nothing yet)
    _drain_timer: asyncio.TimerHandle | None = None
    _drain_started: float | None = None  # when the app answered, leaving a body unread
    _drained = 0  # bytes of that body since
    _head_bytes = 0  # bytes of the head now arriving
    pace: Pace | None = None  # set by with_pace; else the gateway's config (or the defaults)

    def _settings(self, app: Any) -> None:
        state = None if self.pace else _gateway_state(app)
        pace = self.pace or (_config_pace(state) if state is not None else Pace())
        self._header_seconds = pace.header_seconds
        self._body_seconds = pace.body_seconds
        self._body_rate = pace.body_rate
        self._max_connections = pace.max_connections
        metrics = state.recorder.metrics if state is not None and state.recorder else None
        self._slow_heads = metrics.slow_clients.labels("headers") if metrics else None
        self._slow_bodies = metrics.slow_clients.labels("body") if metrics else None
        self._refused = metrics.refused_connections if metrics else None

    def _refused_at_capacity(self, connections: set[Any]) -> bool:
        """Past the bound (this connection counted): a 503 and the connection closed."""
        if len(connections) <= self._max_connections:
            return False
        self.transport.write(_too_many(self._max_connections))
        self.transport.close()
        if self._refused is not None:
            self._refused.inc()
        return True

    def _head_begins(self, begun: bool) -> None:
        self._header_begun = self._header_begun or begun
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._header_seconds, self._head_too_slow)

    def _head_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._header_begun = False
        self._head_bytes = 0

    def _head_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_begun:
            self.transport.write(_answer(self._header_seconds))
            if self._slow_heads is not None:
                self._slow_heads.inc()
        self.transport.close()

    def _unread_body(self, arriving: bool, received: int = 0) -> None:
        """(Re)start the wait for the next piece of a body the app answered without reading
        (``received``: bytes that just came), or (not ``arriving``) stop it. The wait is a body
        read by the app's (`web/body.py`)."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if not arriving or self.transport.is_closing():
            self._drain_started = None
            return
        now = self.loop.time()
        if self._drain_started is None:
            self._drain_started, self._drained = now, 0
        else:
            self._drained += received
        wait, _ = next_wait(self._body_seconds, self._body_rate, self._drain_started,
                            self._drained, now)
        self._drain_timer = self.loop.call_later(max(wait, 0.0), self._body_too_slow)

    def _body_too_slow(self) -> None:
        self._drain_timer = None
        if not self.transport.is_closing():
            # The answer is out already: all that is left is to close.
            if self._slow_bodies is not None:
                self._slow_bodies.inc()
            self.transport.close()

    def _stop_timers(self) -> None:
        self._head_done()
        self._unread_body(False)


class HttpToolsClientTimeouts(_Timers, HttpToolsProtocol):
    """uvicorn's httptools protocol (what `serve` runs) with the timeouts."""

    _body_done = True  # the current request's body has all arrived

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings(self.app)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._refused_at_capacity(self.connections):
            self._head_begins(False)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            # The head is still incomplete after this read: all of it was head.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_done()
                self.transport.write(_head_too_large())
                self.transport.close()
                return
        self._watch_body(len(data))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_done = False
        self._head_begins(True)

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_done = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_body()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def _watch_body(self, received: int = 0) -> None:
        cycle = self.cycle
        self._unread_body(cycle is not None and cycle.response_complete and not self._body_done,
                          received)


class H11ClientTimeouts(_Timers, H11Protocol):
    """uvicorn's h11 protocol with the timeouts. h11 has no "message begins" event: a head has
    begun when bytes wait in its buffer while it still expects a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings(self.app)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._refused_at_capacity(self.connections):
            self._head_begins(False)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(len(data))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # a pipelined request's head may be waiting, in part

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def _watch(self, received: int = 0) -> None:
        conn = self.conn
        if conn.their_state is not h11.IDLE:
            self._head_done()  # a request's head is complete (or the connection failed)
        elif conn.trailing_data[0]:
            self._head_begins(True)
        cycle = self.cycle
        self._unread_body(cycle is not None and cycle.response_complete
                          and conn.their_state is h11.SEND_BODY, received)
