"""The tracer behind base.py's seam when tracing is on: our own spans (spans.py), sampled as
OpenTelemetry's ParentBased(TraceIdRatioBased) would (context.py), exported over OTLP by a
background thread (export.py). docs/tracing.md says why not OpenTelemetry's SDK: its spans
and its exporter cost more CPU per request than the gateway's own work.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

from llm_gateway.tracing.base import Attributes, Span, SpanKind, Tracer
from llm_gateway.tracing.context import RatioSampler, new_span_id, new_trace_id, parse_traceparent
from llm_gateway.tracing.export import SpanExporter
from llm_gateway.tracing.spans import KINDS, QuietSpan, RecordedSpan
from llm_gateway.tracing.transport import Transport


def resource_attributes(service_name: str) -> dict[str, str]:
    """What every span's resource says about this process."""
    return {"service.name": service_name, "telemetry.sdk.name": "llm_gateway",
            "telemetry.sdk.language": "python",
            "process.runtime.version": platform.python_version()}


class NativeTracer(Tracer):
    enabled = True

    def __init__(self, transport: Transport, *, service_name: str, sample_ratio: float,
                 record_content: bool, **exporter_options: float) -> None:
        self.record_content = record_content
        self._sampler = RatioSampler(sample_ratio)
        self.exporter = SpanExporter(transport, resource_attributes(service_name),
                                     **exporter_options)  # type: ignore[arg-type]
        self._ended = self.exporter.add

    def start(self, name: str, headers: Mapping[str, str] | None = None,
              attributes: Attributes | None = None, *, kind: SpanKind = "server",
              start_ns: int | None = None) -> Span:
        parent = None
        if headers is not None and "traceparent" in headers:
            parent = parse_traceparent(headers["traceparent"], headers.get("tracestate"))
        if parent is None:  # no traceparent, or a malformed one: a new trace
            trace_id = new_trace_id()
            if not self._sampler.new_trace(trace_id):
                return QuietSpan(trace_id, new_span_id(), "")
            return RecordedSpan(self._ended, trace_id, b"", name, KINDS[kind], attributes,
                                start_ns)
        if not self._sampler.continued(parent):
            return QuietSpan(parent.trace_id, new_span_id(), parent.tracestate)
        return RecordedSpan(self._ended, parent.trace_id, parent.span_id, name, KINDS[kind],
                            attributes, start_ns, parent.tracestate, remote_parent=True)

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        return self.exporter.flush(timeout_seconds)

    def shutdown(self) -> None:
        self.exporter.shutdown()
