"""A span per backend attempt (routing's deployments, fallbacks, a plain route's backend, a
passthrough request), the parent of the next hop: the upstream or worker gets it as its
`traceparent`."""

from __future__ import annotations

from collections.abc import MutableMapping

from llm_gateway.call import Call, Result
from llm_gateway.errors import GatewayError
from llm_gateway.tracing.answer import EndSpan
from llm_gateway.tracing.base import Span


def begin(call: Call, backend: str, deployment: str | None = None) -> tuple[Span, Span]:
    """(the call's span before, the attempt's span), the latter now the call's: the backend
    injects it. Tracing off (or not sampled): both the same no-op."""
    parent = call.span
    span = _child(parent, backend, deployment)
    call.span = span
    return parent, span


def answered(call: Call, parent: Span, span: Span, result: Result,
             failed: str | None = None) -> None:
    """The backend answered: the span ends with the answer, or now when it is dropped for a
    retry or a fallback (`failed`: why)."""
    call.span = parent
    if span is not parent:
        _answered(span, result, failed)


def raised(call: Call, parent: Span, span: Span, exc: BaseException) -> None:
    call.span = parent
    if span is not parent:
        _raised(span, exc)


def forwarding(parent: Span, backend: str, headers: MutableMapping[str, str]) -> Span:
    """A passthrough request's attempt, its `traceparent` now in `headers` (sampled or not, the
    upstream continues the trace; tracing off: the client's own header goes on untouched)."""
    span = _child(parent, backend, None)
    span.inject(headers)
    return span


def forwarded(parent: Span, span: Span, result: Result) -> None:
    if span is not parent:
        _answered(span, result, None)


def forward_failed(parent: Span, span: Span, exc: BaseException) -> None:
    if span is not parent:
        _raised(span, exc)


def _child(parent: Span, backend: str, deployment: str | None) -> Span:
    if not parent.recording:
        return parent
    attributes = {"llm_gateway.backend": backend}
    if deployment is not None:
        attributes["llm_gateway.deployment"] = deployment
    return parent.child(f"attempt {backend}", attributes, kind="client")


def _answered(span: Span, result: Result, failed: str | None) -> None:
    span.set("http.response.status_code", result.status)
    span.event("response_start")
    if failed is not None:
        span.fail(failed)
        span.end()
    else:
        result.observe(EndSpan(span))


def _raised(span: Span, exc: BaseException) -> None:
    code = (exc.code or str(exc.status)) if isinstance(exc, GatewayError) \
        else type(exc).__name__
    span.fail(code, str(exc) if isinstance(exc, GatewayError) else "")
    span.end()
