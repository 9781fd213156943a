"""A real OTLP/HTTP trace receiver on 127.0.0.1, for tests and bench (opentelemetry-proto,
the dev extra).

It decodes each protobuf `ExportTraceServiceRequest` (POST /v1/traces) with
opentelemetry-proto and keeps the spans as plain `ReceivedSpan`s; `wait_for` waits for them.
`python -m llm_gateway.testing.otlp_receiver --port N` runs one alone (bench/overhead's
`--tracing`): it decodes and counts, keeps nothing, and says its counts at GET /stats.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_gateway.testing.certificates import CertificateFiles
from llm_gateway.testing.threaded import ThreadedServer

PROTOBUF = "application/x-protobuf"
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
          5: "consumer"}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: bool = False
    status_message: str = ""

    def event(self, name: str) -> dict[str, Any] | None:
        return next((attrs for n, attrs in self.events if n == name), None)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode(payload: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(), kind=_KINDS.get(span.kind, "?"),
                    service=str(resource.get("service.name", "")),
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    events=[(e.name, {kv.key: _value(kv.value) for kv in e.attributes})
                            for e in span.events],
                    error=span.status.code == 2, status_message=span.status.message))
    return spans


class OtlpReceiver:
    def __init__(self, *, port: int = 0, keep: bool = True,
                 tls: CertificateFiles | None = None) -> None:
        self.keep = keep  # the spans and payloads (tests); False: only counted (bench)
        self.spans: list[ReceivedSpan] = []
        self.exports = 0  # export requests received
        self.count = 0  # spans received
        self.raw: list[bytes] = []  # every payload, as sent (to search for leaks)
        # Statuses to answer the next exports with, in turn, instead of taking them (retries);
        # each with the Retry-After it sends ("" none).
        self.refuse: list[tuple[int, str]] = []
        self.headers: list[dict[str, str]] = []  # each export's request headers
        self._lock = threading.Lock()
        # Over https with tls's server certificate.
        self.tls = tls
        options = {} if tls is None else {"ssl_certfile": str(tls.server_cert),
                                          "ssl_keyfile": str(tls.server_key)}
        self._server = ThreadedServer(self._app, port=port, name="otlp", interface="asgi3",
                                      **options)
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1/traces"

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if request.method == "GET" and scope["path"] == "/stats":
            await JSONResponse({"exports": self.exports, "spans": self.count})(
                scope, receive, send)
            return
        if request.method != "POST" or scope["path"] != "/v1/traces":
            await Response(status_code=404)(scope, receive, send)
            return
        payload = await request.body()
        with self._lock:
            self.headers.append(dict(request.headers))
            refusal = self.refuse.pop(0) if self.refuse else None
        if refusal is not None:
            status, retry_after = refusal
            headers = {"retry-after": retry_after} if retry_after else None
            await Response(status_code=status, headers=headers)(scope, receive, send)
            return
        if request.headers.get("content-encoding") == "gzip":
            payload = gzip.decompress(payload)
        spans = decode(payload)
        with self._lock:
            self.exports += 1
            self.count += len(spans)
            if self.keep:
                self.raw.append(payload)
                self.spans.extend(spans)
        body = ExportTraceServiceResponse().SerializeToString()
        await Response(body, media_type=PROTOBUF)(scope, receive, send)

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.raw.clear()
            self.refuse.clear()
            self.headers.clear()
            self.exports = self.count = 0

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool],
                 timeout: float = 15.0) -> list[ReceivedSpan]:
        """The spans once ``done`` says they are all here; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted(s.name for s in spans)
                raise AssertionError(f"spans did not arrive in {timeout} s; got {names}")
            time.sleep(0.05)

    def start(self) -> OtlpReceiver:
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An OTLP/HTTP trace receiver that counts.")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args(argv)
    receiver = OtlpReceiver(port=args.port, keep=False).start()
    print(f"listening on {receiver.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    receiver.stop()
    print(f"received {receiver.count} spans in {receiver.exports} exports", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
