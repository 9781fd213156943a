"""The native spans behind base.py's seam: a recorded one (small, __slots__, handed to the
exporter when it ends) and a quiet one (a trace not sampled: nothing kept, ids propagated)."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping

from llm_gateway.tracing.base import Attributes, AttrValue, Span, SpanKind
from llm_gateway.tracing.context import SAMPLED, format_traceparent, new_span_id

KINDS = {"internal": 1, "server": 2, "client": 3}  # OTLP's Span.SpanKind numbers
STATUS_ERROR = 2  # OTLP's Status.StatusCode
MAX_EVENTS = 128  # as the SDK's default limit: a long stream's events stay bounded
MAX_ATTRIBUTES = 128

Ended = Callable[["RecordedSpan"], None]


def _propagate(headers: MutableMapping[str, str], trace_id: bytes, span_id: bytes,
               flags: int, tracestate: str) -> None:
    headers.pop("tracestate", None)  # the client's, for a trace this hop does not continue
    headers["traceparent"] = format_traceparent(trace_id, span_id, flags)
    if tracestate:
        headers["tracestate"] = tracestate


class QuietSpan(Span):
    """A span of a trace not sampled: records nothing, but names its trace for the next hop
    (flags 00) and for the log line."""

    __slots__ = ("span_id", "trace_id", "tracestate")

    def __init__(self, trace_id: bytes, span_id: bytes, tracestate: str) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.tracestate = tracestate

    def child(self, name: str, attributes: Attributes | None = None, *,
              kind: SpanKind = "internal", start_ns: int | None = None) -> Span:
        return QuietSpan(self.trace_id, new_span_id(), self.tracestate)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        _propagate(headers, self.trace_id, self.span_id, 0, self.tracestate)

    def ids(self) -> tuple[str, str] | None:
        return self.trace_id.hex(), self.span_id.hex()


class RecordedSpan(Span):
    """A sampled span: its data, read by otlp_wire.py once `end` has handed it over."""

    __slots__ = ("_ended", "_sink", "attributes", "end_ns", "events", "kind", "name",
                 "parent_id", "remote_parent", "span_id", "start_ns", "status_code",
                 "status_message", "trace_id", "tracestate")

    recording = True

    def __init__(self, ended_to: Ended, trace_id: bytes, parent_id: bytes, name: str,
                 kind: int, attributes: Attributes | None, start_ns: int | None,
                 tracestate: str = "", remote_parent: bool = False) -> None:
        self._sink = ended_to  # takes the span once it has ended (the exporter's queue)
        self._ended = False
        self.trace_id = trace_id
        self.span_id = new_span_id()
        self.parent_id = parent_id  # b"": a root span
        self.remote_parent = remote_parent  # the parent came in a traceparent
        self.name = name
        self.kind = kind
        self.start_ns = start_ns or time.time_ns()
        self.end_ns = 0
        self.attributes: dict[str, AttrValue] = dict(attributes) if attributes else {}
        # (name, time ns, attributes or None); a list from the first event on
        self.events: list[tuple[str, int, Attributes | None]] | tuple[()] = ()
        self.status_code = 0
        self.status_message = ""
        self.tracestate = tracestate

    def child(self, name: str, attributes: Attributes | None = None, *,
              kind: SpanKind = "internal", start_ns: int | None = None) -> Span:
        # a child of an ended span still records, as with the SDK
        return RecordedSpan(self._sink, self.trace_id, self.span_id, name, KINDS[kind],
                            attributes, start_ns, self.tracestate)

    def set(self, key: str, value: AttrValue | None) -> None:
        if value is None or self._ended:
            return
        if len(self.attributes) < MAX_ATTRIBUTES or key in self.attributes:
            # a list is copied: the caller may change it after
            self.attributes[key] = value if type(value) is not list else tuple(value)

    def set_all(self, attributes: Attributes) -> None:
        mine = self.attributes
        if self._ended or len(mine) + len(attributes) > MAX_ATTRIBUTES:
            for key, value in attributes.items():  # near the limit: one by one
                self.set(key, value)
            return
        if None not in attributes.values():
            mine.update(attributes)  # the common case, in C (a sequence is kept as given)
            return
        for key, value in attributes.items():
            if value is not None:
                mine[key] = value

    def event(self, name: str, attributes: Attributes | None = None,
              at_ns: int | None = None) -> None:
        events = self.events
        if not self._ended and len(events) < MAX_EVENTS:
            if type(events) is tuple:
                events = self.events = []
            events.append((name, at_ns or time.time_ns(),  # type: ignore[union-attr]
                           dict(attributes) if attributes else None))

    def fail(self, error_type: str, message: str = "") -> None:
        if self._ended:
            return
        self.attributes["error.type"] = error_type
        self.status_code = STATUS_ERROR
        self.status_message = message
        self.event("exception", {"exception.type": error_type, "exception.message": message})

    def rename(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def end(self, end_ns: int | None = None) -> None:
        if not self._ended:
            self._ended = True
            self.end_ns = end_ns or time.time_ns()
            self._sink(self)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        _propagate(headers, self.trace_id, self.span_id, SAMPLED, self.tracestate)

    def ids(self) -> tuple[str, str] | None:
        return self.trace_id.hex(), self.span_id.hex()
