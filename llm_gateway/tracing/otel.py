"""The seam over OpenTelemetry's SDK: spans exported over OTLP (http or grpc) in batches.

Imported only by build.py, and only when tracing is on. Each Tracer has its own provider
(not OpenTelemetry's global one): several gateways in one process (tests) stay apart, and
nothing else in the process starts exporting because the gateway does.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llm_gateway.tracing.base import Attributes, AttrValue, Span, SpanKind, Tracer

_KINDS = {"internal": OtelKind.INTERNAL, "server": OtelKind.SERVER, "client": OtelKind.CLIENT}
_PROPAGATOR = TraceContextTextMapPropagator()


class OtelSpan(Span):
    __slots__ = ("_ended", "_span", "_tracer", "recording")

    def __init__(self, span: trace.Span, tracer: trace.Tracer) -> None:
        self._span = span
        self._tracer = tracer
        self._ended = False
        self.recording = span.is_recording()  # False: not sampled; it still propagates

    def child(self, name: str, attributes: Attributes | None = None, *,
              kind: SpanKind = "internal", start_ns: int | None = None) -> Span:
        context = trace.set_span_in_context(self._span)
        span = self._tracer.start_span(name, context, _KINDS[kind], attributes,
                                       start_time=start_ns)
        return OtelSpan(span, self._tracer)

    def set(self, key: str, value: AttrValue | None) -> None:
        if value is not None and not self._ended:
            self._span.set_attribute(key, value)

    def set_all(self, attributes: Attributes) -> None:
        if not self._ended:
            self._span.set_attributes(attributes)

    def event(self, name: str, attributes: Attributes | None = None,
              at_ns: int | None = None) -> None:
        if not self._ended:
            self._span.add_event(name, attributes, at_ns)

    def fail(self, error_type: str, message: str = "") -> None:
        if self._ended:
            return
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, message or None))
        self._span.add_event("exception", {"exception.type": error_type,
                                           "exception.message": message})

    def rename(self, name: str) -> None:
        if not self._ended:
            self._span.update_name(name)

    def end(self, end_ns: int | None = None) -> None:
        if not self._ended:
            self._ended = True
            self._span.end(end_ns)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        headers.pop("tracestate", None)  # the client's, for a trace this hop does not continue
        _PROPAGATOR.inject(headers, trace.set_span_in_context(self._span))

    def ids(self) -> tuple[str, str] | None:
        context = self._span.get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class OtelTracer(Tracer):
    enabled = True

    def __init__(self, exporter: SpanExporter, *, service_name: str, sample_ratio: float,
                 record_content: bool) -> None:
        self.record_content = record_content
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("llm_gateway")

    def start(self, name: str, headers: Mapping[str, str] | None = None,
              attributes: Attributes | None = None, *, kind: SpanKind = "server",
              start_ns: int | None = None) -> Span:
        parent = None
        if headers is not None and "traceparent" in headers:
            carrier = {"traceparent": headers["traceparent"]}
            if "tracestate" in headers:
                carrier["tracestate"] = headers["tracestate"]
            parent = _PROPAGATOR.extract(carrier)  # a malformed one: a new trace
        span = self._tracer.start_span(name, parent, _KINDS[kind], attributes,
                                       start_time=start_ns)
        return OtelSpan(span, self._tracer)

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        return self._provider.force_flush(int(timeout_seconds * 1000))

    def shutdown(self) -> None:
        self._provider.shutdown()
