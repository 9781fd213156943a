"""The span exporter (export.py, transport.py) against real receivers on 127.0.0.1: OTLP/HTTP
(retries on 503 with Retry-After, configured headers), a full queue, shutdown, and OTLP/gRPC
through a real grpcio server."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent import futures

import pytest

from llm_gateway.testing.otlp_receiver import OtlpReceiver, decode
from llm_gateway.tracing import otlp_wire
from llm_gateway.tracing.export import SpanExporter
from llm_gateway.tracing.spans import RecordedSpan
from llm_gateway.tracing.transport import GrpcTransport, HttpTransport, Sent

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
RESOURCE = {"service.name": "export-test"}


def _ended(exporter: SpanExporter, *names: str) -> None:
    for name in names:
        RecordedSpan(exporter.add, TRACE, b"", name, 1, {"n": name}, None).end()


def test_http_export_retries_a_503_then_delivers(receiver: OtlpReceiver):
    receiver.refuse = [(503, "0.2"), (429, "")]
    waits: list[float] = []
    exporter = SpanExporter(HttpTransport(receiver.url, {"x-token": "t0ken"}), RESOURCE,
                            schedule_delay=60, backoff=0.01,
                            sleep=lambda s: waits.append(s) or time.sleep(s))
    try:
        _ended(exporter, "a", "b")
        assert exporter.flush(10)
        assert sorted(s.name for s in receiver.spans) == ["a", "b"]
        assert receiver.spans[0].service == "export-test"
        assert receiver.spans[0].attributes["n"] in ("a", "b")
        assert len(receiver.headers) == 3  # 503, 429, then taken
        assert all(h["content-type"] == "application/x-protobuf" and h["x-token"] == "t0ken"
                   for h in receiver.headers)
        assert waits[0] == pytest.approx(0.2)  # the 503's Retry-After, over 0.01 s of backoff
        assert waits[1] == pytest.approx(0.02)  # 429 without Retry-After: the backoff
        assert exporter.failed == 0
    finally:
        exporter.shutdown()


def test_http_export_gives_up_after_bounded_tries_and_on_a_400(receiver: OtlpReceiver):
    receiver.refuse = [(503, "")] * 3 + [(400, "")]
    exporter = SpanExporter(HttpTransport(receiver.url, {}), RESOURCE, schedule_delay=60,
                            backoff=0.001, max_tries=3)
    try:
        _ended(exporter, "lost")
        assert exporter.flush(10)
        _ended(exporter, "refused")
        assert exporter.flush(10)
        assert receiver.spans == [] and exporter.failed == 2
        assert len(receiver.headers) == 4  # three tries, then the 400 not retried
    finally:
        exporter.shutdown()


def test_a_refused_connection_is_retried_then_counted():
    attempts = []

    class Counting(HttpTransport):
        def send(self, payload: bytes, timeout: float) -> Sent:
            attempts.append(1)
            return super().send(payload, timeout)

    exporter = SpanExporter(Counting("http://127.0.0.1:9/v1/traces", {}), RESOURCE,
                            schedule_delay=60, backoff=0.001, max_tries=3)
    try:
        _ended(exporter, "x")
        assert exporter.flush(10)
        assert len(attempts) == 3 and exporter.failed == 1
    finally:
        exporter.shutdown()


class Held:
    """A transport that waits until released, keeping what it was sent."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.payloads: list[bytes] = []

    def send(self, payload: bytes, timeout: float) -> Sent:
        self.release.wait(10)
        self.payloads.append(payload)
        return Sent(True)

    def close(self) -> None:
        pass


def test_a_full_queue_drops_the_newest_and_counts_them(caplog):
    held = Held()
    exporter = SpanExporter(held, RESOURCE, max_queue=3, max_batch=100, schedule_delay=60)
    try:
        with caplog.at_level(logging.WARNING, logger="llm_gateway.tracing.export"):
            started = time.perf_counter()
            _ended(exporter, "1", "2", "3", "4", "5")  # never blocks
            assert time.perf_counter() - started < 0.5
            assert exporter.dropped == 2
            held.release.set()
            assert exporter.flush(10)
            _ended(exporter, "6", "7", "8", "9")
            assert exporter.flush(10)
        names = [s.name for p in held.payloads for s in decode(p)]
        assert names == ["1", "2", "3", "6", "7", "8"] and exporter.dropped == 3
        drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert drops == ["span export queue full: 2 spans dropped (2 in all)"]  # once a minute
    finally:
        exporter.shutdown()


def test_full_batches_go_without_waiting_for_the_delay(receiver: OtlpReceiver):
    exporter = SpanExporter(HttpTransport(receiver.url, {}), RESOURCE, max_batch=4,
                            schedule_delay=60)
    try:
        _ended(exporter, *"abcdefghi")
        receiver.wait_for(lambda spans: len(spans) == 8, timeout=10)
        assert receiver.exports == 2  # two full batches; the ninth waits for the delay
    finally:
        exporter.shutdown()
    assert len(receiver.spans) == 9


def test_shutdown_exports_what_is_queued(receiver: OtlpReceiver):
    exporter = SpanExporter(HttpTransport(receiver.url, {}), RESOURCE, schedule_delay=60)
    _ended(exporter, "p", "q", "r")
    exporter.shutdown()
    assert sorted(s.name for s in receiver.spans) == ["p", "q", "r"]
    _ended(exporter, "late")  # after shutdown: dropped, not raised
    assert exporter.dropped == 1


def test_grpc_export_through_a_real_grpcio_server():
    grpc = pytest.importorskip("grpc")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    received: list[ExportTraceServiceRequest] = []
    metadata: list[dict[str, str]] = []

    def export(request: ExportTraceServiceRequest, context) -> ExportTraceServiceResponse:
        metadata.append(dict(context.invocation_metadata()))
        if len(metadata) == 1:  # the first try: unavailable, retried
            context.abort(grpc.StatusCode.UNAVAILABLE, "starting")
        received.append(request)
        return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {
            "Export": grpc.unary_unary_rpc_method_handler(
                export, request_deserializer=ExportTraceServiceRequest.FromString,
                response_serializer=ExportTraceServiceResponse.SerializeToString)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    exporter = SpanExporter(GrpcTransport(f"http://127.0.0.1:{port}", {"X-Token": "g"}),
                            RESOURCE, schedule_delay=60, backoff=0.01)
    try:
        _ended(exporter, "g1", "g2")
        assert exporter.flush(10)
        assert len(received) == 1 and len(metadata) == 2 and exporter.failed == 0
        spans = received[0].resource_spans[0].scope_spans[0].spans
        assert [s.name for s in spans] == ["g1", "g2"] and spans[0].trace_id == TRACE
        assert metadata[-1]["x-token"] == "g"
    finally:
        exporter.shutdown()
        server.stop(None)


def test_spans_ending_during_a_send_wait_for_the_next_round():
    sent: list[list[str]] = []

    class Busy:
        """Each send sees another span end meanwhile (a gateway under load)."""

        def send(self, payload: bytes, timeout: float) -> Sent:
            sent.append([s.name for s in decode(payload)])
            _ended(exporter, f"during{len(sent)}")
            return Sent(True)

        def close(self) -> None:
            pass

    exporter = SpanExporter(Busy(), RESOURCE, schedule_delay=60)
    try:
        _ended(exporter, "a", "b")
        assert exporter.flush(10)
        assert sent == [["a", "b"]]  # one export, not a chase after each new span
        assert exporter.flush(10)
        assert sent == [["a", "b"], ["during1"]]
    finally:
        exporter.shutdown()


def test_a_connection_the_receiver_closed_is_opened_anew_without_a_retry():
    first = OtlpReceiver().start()
    port = first.port
    transport = HttpTransport(first.url, {})
    payload = _payload("before")
    try:
        assert transport.send(payload, 5).ok
    finally:
        first.stop()  # the kept-alive connection dies with it
    second = OtlpReceiver(port=port).start()
    try:
        sent = transport.send(_payload("after"), 5)
        assert sent.ok, sent.problem
        assert [s.name for s in second.spans] == ["after"] and len(second.headers) == 1
    finally:
        transport.close()
        second.stop()


def test_a_receiver_that_never_answers_times_out_and_may_be_retried():
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    accepting.start()
    transport = HttpTransport(f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces", {})
    try:
        started = time.perf_counter()
        sent = transport.send(_payload("slow"), 0.3)
        assert time.perf_counter() - started < 3
        assert not sent.ok and sent.retry and "timed out" in sent.problem
    finally:
        transport.close()
        server.close()
        for conn in held:
            conn.close()


def test_an_endpoint_that_is_not_an_http_url_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        HttpTransport("ftp://collector/v1/traces", {})


def _payload(name: str) -> bytes:
    ended: list[RecordedSpan] = []
    RecordedSpan(ended.append, TRACE, b"", name, 1, None, None).end()
    return otlp_wire.export_request(otlp_wire.resource(RESOURCE), otlp_wire.scope("t"),
                                    map(otlp_wire.span_field, ended))
