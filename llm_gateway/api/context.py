"""The request's context: made once at the edge, read through one typed accessor.

What the layers learn about a request on its way (who calls, the parsed call, the metrics
record) travels here, not in loose ASGI scope keys: a newcomer finds every field in one place,
and mypy checks each use.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from llm_gateway.api.state import State
from llm_gateway.call import Call, Result
from llm_gateway.metrics.recorder import RequestRecord
from llm_gateway.principal import Principal
from llm_gateway.tracing.base import NO_SPAN, Span

_KEY = "llm_gateway"  # the one scope key: ASGI's place for what a server adds to a request


@dataclass(slots=True)
class RequestContext:
    state: State
    request_id: str
    record: RequestRecord | None = None  # metrics and the log line; None when neither is on
    principal: Principal | None = None  # once authenticated (api/dispatch.py: caller)
    call: Call | None = None  # a model endpoint's parsed call, for its own work afterwards
    # Its answer once dispatched: the edge ends it when the response path failed before the
    # relay did (the ledger row, the limits reservation, the upstream response).
    answer: Result | None = None
    span: Span = NO_SPAN  # the request's span (tracing.enabled), its children's parent

    def attach(self, scope: Scope) -> None:
        scope[_KEY] = self


def context(scope: Scope) -> RequestContext:
    """The context the edge attached to this request."""
    ctx = scope[_KEY]
    assert isinstance(ctx, RequestContext)
    return ctx
