"""A fake OpenAI upstream: a real HTTP server on 127.0.0.1 that speaks OpenAI's wire format.

The gateway's tests and benchmarks point the gateway at it. It runs a Starlette app under
uvicorn in a background thread with its own event loop, so a plain synchronous fixture can
start and stop it::

    with FakeUpstream(api_key="sk-test") as fake:
        client = openai.OpenAI(base_url=fake.url, api_key="sk-test")
        ...
        assert fake.calls["POST /v1/chat/completions"] == 1

Answers are deterministic echoes of the request; the text and token-counting rules are in
:mod:`llm_gateway.testing.fake_responses`. Failures are injected per request with
:meth:`FakeUpstream.fail_next`, :meth:`~FakeUpstream.delay_next` and
:meth:`~FakeUpstream.drop_next_stream`. Any ``/v1`` path without a model endpoint echoes
what it received (method, size, sha256), for testing transparent passthrough.

Standalone, for benchmarks::

    python -m llm_gateway.testing.fake_upstream --host 127.0.0.1 --port 9999 [--chunk-delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.threaded import ThreadedServer

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Echo bodies above this are hashed but not kept, so multi-GiB uploads cost no memory.
ECHO_KEEP_LIMIT = 1024 * 1024

Peer = tuple[str, int]


@dataclass
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any | None


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    message: str


@dataclass
class _Incoming:
    """What a handler needs of a request, once its body has been read."""

    method: str
    path: str
    query: str
    request: Request
    json: Any | None
    size: int
    sha256: str


def _json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def _error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> Response:
    return Response(
        fr.error_body(message, type_, code, param),
        status_code=status,
        media_type="application/json",
    )


def _json_object(inc: _Incoming) -> dict[str, Any]:
    if not isinstance(inc.json, dict):
        raise fr.BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        )
    return inc.json


def _tracking_protocol(transports: dict[Peer, asyncio.Transport]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, noting each connection's transport by peer address.

    ASGI gives an app no way to close its connection without answering; the fake needs
    that to simulate an upstream that dies mid-request, so it finds the transport by the
    scope's ``client`` (uvicorn fills it from the same peer address).
    """
    base: Any = AutoHTTPProtocol

    class TrackingProtocol(base):  # type: ignore[misc, valid-type]
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

    def __init__(self, owner: FakeUpstream) -> None:
        super().__init__()
        self._owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._owner._sever(scope, _wait_disconnect(receive))


class _EventStream(Response):
    """An SSE body sent event by event, noticing when the client goes away mid-stream."""

    media_type = "text/event-stream"

    def __init__(self, owner: FakeUpstream, events: list[bytes], droppable: int) -> None:
        # Not Response.__init__: it would announce a content-length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self._owner = owner
        self._events = events
        self._droppable = droppable  # events before the terminal ones
        self._delay = owner.chunk_delay
        self.drop_after: int | None = None

    def dropping(self, after: int) -> _EventStream:
        self.drop_after = max(0, min(after, self._droppable))
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
                await send({"type": "http.response.body", "body": event, "more_body": i < last})
        except OSError:  # servers on ASGI spec >= 2.4 raise this once the client is gone
            owner._note_disconnect()
        except asyncio.CancelledError:
            owner._note_disconnect()
            raise
        finally:
            watcher.cancel()
            owner._wakers.discard(wake)


class FakeUpstream:
    """The fake OpenAI server; see the module docstring. Control methods are thread-safe.

    Attributes read by tests (reset by :meth:`reset`):

    * ``calls``: ``"METHOD /path"`` -> count, every request, failed and injected ones too;
    * ``requests``: :class:`RecordedRequest` in arrival order (echo bodies over 1 MiB are
      not kept: ``body`` is ``b""`` and ``json`` None);
    * ``disconnects``: streams whose client went away before the stream ended. A stream
      sent with ``chunk_delay == 0`` is written in one go, so only a delayed (or huge)
      stream can notice its client leaving.

    Injections queue up and apply to ``/v1`` requests in arrival order: a delay, then an
    injected failure, then the API-key check, then a drop (only requests that got that far
    use one up).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        models: list[str] | None = None,
        chunk_delay: float = 0.0,
        record_requests: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.models = list(models) if models is not None else list(fr.DEFAULT_MODELS)
        self.chunk_delay = chunk_delay
        # Benchmarks turn this off so a long run does not keep every request in memory.
        self.record_requests = record_requests
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        self._failures: collections.deque[_Failure] = collections.deque()
        self._delays: collections.deque[float] = collections.deque()
        self._drops: collections.deque[int] = collections.deque()
        self._stored: dict[str, dict[str, Any]] = {}
        self._transports: dict[Peer, asyncio.Transport] = {}
        self._runner: ThreadedServer | None = None
        # Events that cut pauses short; stop() sets them all so no request keeps it waiting.
        self._wakers: set[asyncio.Event] = set()
        self._stopping = False
        self.app = self._build_app()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> FakeUpstream:
        """Serve in a background thread; returns once the socket listens (port 0: a free one)."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream already started")
        self._runner = ThreadedServer(
            self.app, host=self.host, port=self.port, name="fake-upstream", lifespan="off",
            http=_tracking_protocol(self._transports), timeout_graceful_shutdown=1,
        )
        self.port = self._runner.start()
        return self

    def stop(self) -> None:
        runner = self._runner
        if runner is None:
            return
        # Delays and chunk pauses end at once, so in-flight requests finish instead of being
        # cancelled mid-way (which uvicorn would log as an application error).
        runner.call_soon(self._wake_all)
        # Don't wait for in-flight requests beyond that: one may hang on a stuck client.
        if not runner.stop(force=True, timeout=5):
            runner.call_soon(self._abort_all)
            runner.stop(force=True, timeout=5)
        self._runner = None
        self._stopping = False

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

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control (called from the test thread) ------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """The next ``times`` requests to /v1 answer ``status`` with an OpenAI error body."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, message) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests to /v1 wait ``seconds`` before the first response byte."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def drop_next_stream(self, after_chunks: int = 2, times: int = 1) -> None:
        """The next ``times`` requests that get past auth and injected failures are cut off.

        A stream sends ``after_chunks`` data events (never its finish chunk or [DONE]) and then
        the connection closes; a non-stream request's connection closes with no response.
        """
        with self._lock:
            self._drops.extend([after_chunks] * times)

    def reset(self) -> None:
        """Forget counters, recorded requests, stored responses and pending injections."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self.disconnects = 0
            self._failures.clear()
            self._delays.clear()
            self._drops.clear()
            self._stored.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # --- server side --------------------------------------------------------------------------

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

    def _build_app(self) -> Starlette:
        def route(
            path: str,
            handler: Callable[[_Incoming], Response],
            methods: list[str],
            *,
            echo: bool = False,
            v1: bool = True,
        ) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self._handle(request, handler, echo=echo, v1=v1)

            return Route(path, endpoint, methods=methods)

        return Starlette(
            routes=[
                route("/v1/chat/completions", self._chat, ["POST"]),
                route("/v1/completions", self._completions, ["POST"]),
                route("/v1/embeddings", self._embeddings, ["POST"]),
                route("/v1/models", self._models, ["GET"]),
                route("/v1/models/{model_id:path}", self._model, ["GET"]),
                route("/v1/responses", self._responses, ["POST"]),
                route("/v1/responses/{response_id}", self._response, ["GET", "DELETE"]),
                route("/v1/{rest:path}", self._echo, ALL_METHODS, echo=True),
                route("/{rest:path}", self._unknown, ALL_METHODS, v1=False),
            ]
        )

    async def _handle(
        self, request: Request, handler: Callable[[_Incoming], Response], *, echo: bool, v1: bool
    ) -> Response:
        body, size, digest = await _read_body(
            request, hashing=echo, keep_limit=ECHO_KEEP_LIMIT if echo else None
        )
        parsed: Any = None
        if body:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(body)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        method, path = request.method, request.url.path
        query = request.scope.get("query_string", b"").decode("latin-1")
        with self._lock:
            self.calls[f"{method} {path}"] += 1
            if self.record_requests:
                self.requests.append(RecordedRequest(method, path, query, headers, body, parsed))
            delay = self._delays.popleft() if v1 and self._delays else 0.0
            failure = self._failures.popleft() if v1 and self._failures else None

        if delay > 0:
            wake = self._waker()
            try:
                await _pause(delay, wake)
            finally:
                self._wakers.discard(wake)
        if failure is not None:
            type_, code = fr.error_kind(failure.status)
            response = _error(failure.status, failure.message, type_, code)
            if failure.retry_after is not None:
                response.headers["retry-after"] = failure.retry_after
        elif (
            v1
            and self.api_key is not None
            and (headers.get("authorization") != f"Bearer {self.api_key}")
        ):
            response = _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        else:
            with self._lock:
                drop = self._drops.popleft() if v1 and self._drops else None
            incoming = _Incoming(method, path, query, request, parsed, size, digest)
            try:
                response = handler(incoming)
            except fr.BadRequest as exc:
                response = _error(400, exc.message, "invalid_request_error", None, exc.param)
            if drop is not None:
                if isinstance(response, _EventStream):
                    response = response.dropping(drop)
                else:
                    return _DropConnection(self)
        response.headers["x-request-id"] = headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
        response.headers["openai-processing-ms"] = "1"
        return response

    def _stream(self, built: tuple[list[bytes], int]) -> _EventStream:
        return _EventStream(self, *built)

    # --- endpoints ----------------------------------------------------------------------------

    def _chat(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.chat_answer(body)
        if body.get("stream") is True:
            return self._stream(fr.chat_stream(answer))
        return _json_response(fr.chat_completion(answer))

    def _completions(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.completion_answer(body)
        if body.get("stream") is True:
            return self._stream(fr.completion_stream(answer))
        return _json_response(fr.completion(answer))

    def _embeddings(self, inc: _Incoming) -> Response:
        return _json_response(fr.embeddings(_json_object(inc)))

    def _models(self, inc: _Incoming) -> Response:
        return _json_response(fr.model_list(self.models))

    def _model(self, inc: _Incoming) -> Response:
        model_id = inc.request.path_params["model_id"]
        if model_id not in self.models:
            return _error(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        return _json_response(fr.model_object(model_id))

    def _responses(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.response_answer(body)
        final = fr.response_object(answer, body)
        if final["store"]:
            with self._lock:
                self._stored[answer.id] = final
        if body.get("stream") is True:
            return self._stream(fr.response_stream(answer, final, body))
        return _json_response(final)

    def _response(self, inc: _Incoming) -> Response:
        response_id = inc.request.path_params["response_id"]
        with self._lock:
            stored = (
                self._stored.pop(response_id, None)
                if inc.method == "DELETE"
                else self._stored.get(response_id)
            )
        if stored is None:
            return _error(
                404, f"Response with id '{response_id}' not found.", "invalid_request_error", None
            )
        if inc.method == "DELETE":
            return _json_response(fr.response_deleted(response_id))
        return _json_response(stored)

    def _echo(self, inc: _Incoming) -> Response:
        size_param = inc.request.query_params.get("size")
        if inc.method == "GET" and size_param is not None:
            if not size_param.isdigit():
                raise fr.BadRequest("Invalid 'size': expected a non-negative integer.", "size")
            size = int(size_param)
            return StreamingResponse(
                _download(size),
                media_type="application/octet-stream",
                headers={"content-length": str(size)},
            )
        return _json_response(
            {
                "object": "echo",
                "method": inc.method,
                "path": inc.path,
                "query": inc.query,
                "content_type": inc.request.headers.get("content-type"),
                "bytes": inc.size,
                "sha256": inc.sha256,
            }
        )

    def _unknown(self, inc: _Incoming) -> Response:
        return _error(
            404, f"Invalid URL ({inc.method} {inc.path})", "invalid_request_error", "unknown_url"
        )


async def _read_body(
    request: Request,
    *,
    hashing: bool,
    keep_limit: int | None,
) -> tuple[bytes, int, str]:
    """Read the body as a stream: (kept bytes, total size, sha256 hex or "")."""
    digest = hashlib.sha256() if hashing else None
    parts: list[bytes] = []
    size = 0
    keep = True
    async for chunk in request.stream():
        size += len(chunk)
        if digest is not None:
            digest.update(chunk)
        if keep:
            parts.append(chunk)
            if keep_limit is not None and size > keep_limit:
                keep, parts = False, []
    return b"".join(parts), size, digest.hexdigest() if digest is not None else ""


async def _download(size: int) -> AsyncIterator[bytes]:
    for offset in range(0, size, fr.DOWNLOAD_PIECE):
        yield fr.download_piece(offset, min(fr.DOWNLOAD_PIECE, size - offset))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI upstream for gateway benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between stream chunks"
    )
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    parser.add_argument(
        "--record",
        action="store_true",
        help="keep every request in memory (off: a long benchmark would grow)",
    )
    args = parser.parse_args(argv)
    fake = FakeUpstream(
        args.host,
        args.port,
        api_key=args.api_key,
        chunk_delay=args.chunk_delay,
        record_requests=args.record,
    )
    # SIGTERM unwinds through the `with` below like Ctrl-C does, so the server stops cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with fake:
        print(f"fake upstream listening on {fake.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
