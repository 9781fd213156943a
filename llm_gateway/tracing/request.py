"""The request span's children and attributes, as the dispatcher (api/dispatch.py) opens
them: auth, limits, grouping, each backend attempt; and what the answer said. Called only
when the request's span is recording, except `failed` (a no-op span ignores it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from llm_gateway.call import Call, Result
from llm_gateway.errors import GatewayError
from llm_gateway.tracing.answer import AnswerWatch
from llm_gateway.tracing.base import Span
from llm_gateway.tracing.genai import (
    call_attributes,
    operation_name,
    record_prompt,
    result_attributes,
    usage_attributes,
    wall_ns,
)
from llm_gateway.usage import Usage


class Measured(Protocol):
    """What the meter measured (accounting/metering.py's Metered)."""

    @property
    def usage(self) -> Usage | None: ...
    @property
    def first_token_at(self) -> float | None: ...


def failure(span: Span, exc: BaseException) -> None:
    """The span's work raised: error status, the error's code (the message of our own errors
    only: they are written for the client, an unexpected one's might say anything)."""
    if isinstance(exc, GatewayError):
        span.fail(exc.code or exc.type, str(exc))
    else:
        span.fail(type(exc).__name__)


def failed(span: Span, exc: BaseException) -> None:
    """A child's work raised: it ends in error (a 401 from auth, a 429 from limits)."""
    failure(span, exc)
    span.end()


def called(span: Span, call: Call, content: bool) -> None:
    """The call is built: the span is named as GenAI's conventions say ("chat gpt-4o")."""
    span.rename(f"{operation_name(call)} {call.model}")
    span.set_all(call_attributes(call))
    if content:
        record_prompt(span, call)


def grouping_failed(span: Span, waits_from: int, exc: BaseException) -> None:
    """The call waited on grouping (a shared call, the cache) and that failed."""
    failed(span.child("gateway.grouping", start_ns=waits_from), exc)


def answered(span: Span, waited: tuple[int, int], result: Result, content: bool,
             also: Callable[[Any], None] | None) -> Callable[[Any], None]:
    """The answer is on its way: where it came from now, its own attributes as it goes out
    (AnswerWatch), usage and the first token once metered (through ``also``'s chain).
    ``waited``: (from, until) in time.time_ns(), grouping's part (until 0: no backend call of
    its own, so until now)."""
    if result.grouping is not None:
        waits_from, called_at = waited
        span.child("gateway.grouping", {"llm_gateway.grouping": result.grouping},
                   start_ns=waits_from).end(called_at or None)
    span.set_all(result_attributes(result))
    result.observe(AnswerWatch(span, content))

    def metered(measure: Measured) -> None:
        if also is not None:
            also(measure)
        usage = measure.usage
        if usage is not None:
            span.set_all(usage_attributes(usage))
        first = measure.first_token_at
        if first is not None:
            span.event("gen_ai.first_token", None, wall_ns(first))

    return metered
