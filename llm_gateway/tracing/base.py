"""The tracing seam: a `Span` and a `Tracer` whose every method does nothing.

The request path calls these unconditionally; with tracing off they are this module's no-ops
(one attribute lookup and a call returning at once), and nothing of OpenTelemetry is imported.
`tracing/otel.py` overrides them when `tracing.enabled` is true.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import ClassVar

AttrValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
Attributes = Mapping[str, AttrValue]
SpanKind = str  # "internal" | "server" | "client"


class Span:
    """A span, or nothing (this class): tracing off, or not sampled."""

    __slots__ = ()
    # Whether attributes set here go anywhere (tracing on and this trace sampled); a span
    # that does not record still names its trace for the next hop (`inject`).
    recording: bool = False

    def child(self, name: str, attributes: Attributes | None = None, *,
              kind: SpanKind = "internal", start_ns: int | None = None) -> Span:
        """A new span under this one (started now, or at `start_ns`, time.time_ns())."""
        return self

    def set(self, key: str, value: AttrValue | None) -> None:
        """One attribute (None: left out)."""

    def set_all(self, attributes: Attributes) -> None:
        """Several attributes (None: left out). A sequence is kept as given, not copied:
        pass a tuple, or a list nobody changes after."""

    def event(self, name: str, attributes: Attributes | None = None,
              at_ns: int | None = None) -> None:
        """A point in time on this span (the first token, an error), now or at `at_ns`."""

    def fail(self, error_type: str, message: str = "") -> None:
        """The span's work failed: error status, `error.type`, an `exception` event."""

    def rename(self, name: str) -> None:
        """A better name, once known (the model, after the body was read)."""

    def end(self, end_ns: int | None = None) -> None:
        """Over (now, or at `end_ns`); a second call does nothing."""

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """W3C `traceparent` (and `tracestate`) naming this span, for the next hop."""

    def ids(self) -> tuple[str, str] | None:
        """(trace id, span id) as hex, for the request log; None without a trace."""
        return None


NO_SPAN = Span()


class Tracer:
    """Makes the root spans; this one none (tracing off)."""

    enabled: ClassVar[bool] = False
    record_content: bool = False  # prompts and completions as span events

    def start(self, name: str, headers: Mapping[str, str] | None = None,
              attributes: Attributes | None = None, *, kind: SpanKind = "server",
              start_ns: int | None = None) -> Span:
        """A span continuing the caller's trace (its `traceparent` in `headers`), or a new
        trace."""
        return NO_SPAN

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        """Export what is waiting (tests; shutdown)."""
        return True

    def shutdown(self) -> None:
        """Export what is waiting, then stop."""


NO_TRACER = Tracer()
