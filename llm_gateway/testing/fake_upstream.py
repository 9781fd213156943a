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
:meth:`FakeUpstream.fail_next`, :meth:`~FakeUpstream.delay_next`,
:meth:`~FakeUpstream.drop_next_stream`, :meth:`~FakeUpstream.huge_event_next` and
:meth:`~FakeUpstream.stall_after_done_next`. Image generation, speech, transcriptions and batch
creation answer in OpenAI's shapes (:mod:`~llm_gateway.testing.fake_media`); files, batches and
vector stores are kept and served by id (:mod:`~llm_gateway.testing.fake_objects`); any other
``/v1`` path echoes what it received (method, size, sha256), for testing transparent passthrough.

The server's pieces live beside it: connection tracking and streamed bodies in
:mod:`~llm_gateway.testing.fake_connections`, the request handlers in
:mod:`~llm_gateway.testing.fake_endpoints`, failure injection in
:mod:`~llm_gateway.testing.fake_failures`.

Standalone, for benchmarks::

    python -m llm_gateway.testing.fake_upstream --host 127.0.0.1 --port 9999 [--chunk-delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.certificates import CertificateFiles
from llm_gateway.testing.fake_connections import (
    FakeConnections,
    Peer,
    _DropConnection,
    _EventStream,
    _pause,
    _RawStatus,
    _tracking_protocol,
)
from llm_gateway.testing.fake_endpoints import FakeEndpoints, _error, _Incoming, _read_body
from llm_gateway.testing.fake_failures import FakeFailures, _Failure, _StreamFault
from llm_gateway.testing.fake_media import FakeMedia
from llm_gateway.testing.fake_objects import FakeObjects
from llm_gateway.testing.threaded import ThreadedServer

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Echo bodies above this are hashed but not kept, so multi-GiB uploads cost no memory.
ECHO_KEEP_LIMIT = 1024 * 1024


@dataclass
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any | None


class FakeUpstream(FakeConnections, FakeFailures, FakeEndpoints, FakeMedia, FakeObjects):
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
        tls: CertificateFiles | None = None,
        client_certificates: bool = False,
    ) -> None:
        self.host = host
        # Over https with tls's server certificate; client_certificates: only clients showing
        # one signed by tls's CA get in (mutual TLS).
        self.tls = tls
        self.client_certificates = client_certificates
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
        self._stream_faults: collections.deque[_StreamFault] = collections.deque()
        self._stored: dict[str, dict[str, Any]] = {}
        # File contents served at GET /v1/files/{id}/content (tests fill it); others echo.
        self.files: dict[str, bytes] = {}
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}  # files, batches, vector stores
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
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}/v1"

    def start(self) -> FakeUpstream:
        """Serve in a background thread; returns once the socket listens (port 0: a free one)."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream already started")
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl_certfile": str(self.tls.server_cert),
                   "ssl_keyfile": str(self.tls.server_key)}
            if self.client_certificates:
                tls |= {"ssl_ca_certs": str(self.tls.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self._runner = ThreadedServer(
            self.app, host=self.host, port=self.port, name="fake-upstream", lifespan="off",
            http=_tracking_protocol(self._transports), timeout_graceful_shutdown=1, **tls,
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

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control (called from the test thread; injections are in FakeFailures) --------------------

    def reset(self) -> None:
        """Forget counters, recorded requests, stored responses and pending injections."""
        with self._lock:
            self.calls.clear()
            self.requests.clear()
            self.disconnects = 0
            self._failures.clear()
            self._delays.clear()
            self._drops.clear()
            self._stream_faults.clear()
            self._stored.clear()
            self.files.clear()
            self._objects.clear()

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
                route("/v1/images/generations", self._images, ["POST"]),
                route("/v1/audio/speech", self._speech, ["POST"]),
                route("/v1/audio/transcriptions", self._transcription, ["POST"]),
                route("/v1/audio/translations", self._transcription, ["POST"]),
                route("/v1/batches", self._collection, ["GET", "POST"], echo=True),
                route("/v1/batches/{object_id}", self._object, ["GET"], echo=True),
                route("/v1/batches/{object_id}/cancel", self._object, ["POST"], echo=True),
                route("/v1/files", self._collection, ["GET", "POST"], echo=True),
                route("/v1/files/{object_id}", self._object, ["GET", "DELETE"], echo=True),
                route("/v1/vector_stores", self._collection, ["GET", "POST"], echo=True),
                route("/v1/vector_stores/{object_id}", self._object, ["GET", "POST", "DELETE"],
                      echo=True),
                route("/v1/files/{file_id}/content", self._file_content, ["GET"], echo=True),
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
            if await request.is_disconnected():
                # The caller gave up while we waited: leave the faults queued after it (a drop,
                # a stream fault) to the requests of whatever test comes next.
                return Response(status_code=499)
        refused = self._refused(path, query, headers) if v1 and failure is None else None
        if failure is not None:
            response = self._injected(failure)
            if failure.retry_after is not None:
                response.headers["retry-after"] = failure.retry_after
            if not 100 <= failure.status <= 599:
                return _RawStatus(self, failure.status, bytes(response.body))
        elif refused is not None:
            response = refused
        else:
            with self._lock:
                drop = self._drops.popleft() if v1 and self._drops else None
            incoming = _Incoming(method, path, query, request, parsed, size, digest, body)
            try:
                response = handler(incoming)
            except fr.BadRequest as exc:
                response = _error(400, exc.message, "invalid_request_error", None, exc.param)
            if drop is not None:
                if isinstance(response, _EventStream):
                    response = response.dropping(drop)
                else:
                    return _DropConnection(self)
            if isinstance(response, _EventStream):
                with self._lock:
                    fault = self._stream_faults.popleft() if self._stream_faults else None
                if fault is not None:
                    response = response.faulty(fault)
        response.headers["x-request-id"] = headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
        response.headers["openai-processing-ms"] = "1"
        return response

    # --- what another provider's fake changes (fake_azure.py) ----------------------------------

    def _injected(self, failure: _Failure) -> Response:
        """The answer to an injected failure, in this provider's error shape."""
        type_, code = fr.error_kind(failure.status)
        return _error(failure.status, failure.message, type_, failure.code or code)

    def _refused(self, path: str, query: str, headers: dict[str, str]) -> Response | None:
        """The answer to a request this provider refuses before reading it (a wrong key)."""
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        return None


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
