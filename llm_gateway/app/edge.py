"""The gateway's outermost ASGI layer: request ids, routing misses, passthrough, error shaping.

Every HTTP request passes here first and gets its typed context (api/context.py). A path with
dot segments, encoded separators or control characters is refused before routing
(`path_safety.py`). Requests are routed once, by the path table of our OpenAPI documents: an
operation's handler is called directly; `/` and `/ui/...` go to the web console (when on);
any other `/v1/...` path is relayed to the default upstream untouched; the rest is a 404.
Whatever is raised before the response starts becomes an OpenAI-shaped error here, and nowhere
else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.api.context import RequestContext
from llm_gateway.api.passthrough import relay
from llm_gateway.api.state import State
from llm_gateway.call import Result
from llm_gateway.echo import clip
from llm_gateway.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from llm_gateway.path_safety import path_problem
from llm_gateway.stream.relay import Relay
from llm_gateway.tracing.base import NO_SPAN, Span, Tracer
from llm_gateway.tracing.request import failure
from llm_gateway.web.body import paced
from llm_gateway.web.responses import error_response
from llm_gateway.web.spec import PathTable

log = logging.getLogger(__name__)

_GOOD_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class Edge:
    def __init__(self, inner: ASGIApp, state: State, paths: PathTable,
                 operations: Mapping[str, ASGIApp]) -> None:
        self.inner = inner  # the Connexion app: it runs the lifespan
        self.state = state
        self.paths = paths
        self.operations = operations  # operationId -> handler
        self.console: ASGIApp | None = None  # /ui/ and / (set by the factory when enabled)
        self.body_seconds = state.config.server.body_timeout_seconds
        self.body_rate = state.config.server.body_min_bytes_per_second
        metrics = state.recorder.metrics if state.recorder is not None else None
        self.slow_body = metrics.slow_clients.labels("body").inc if metrics is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request_id = _request_id(scope) or self.state.request_ids()
        receive = paced(receive, self.body_seconds, self.body_rate, self.slow_body)  # slow: 408
        rid = request_id.encode()
        recorder = self.state.recorder
        # Metrics and the request log line, written once the response is over.
        record = recorder.start(scope, request_id) if recorder is not None else None
        tracer = self.state.tracer
        span = _request_span(tracer, scope, request_id) if tracer.enabled else NO_SPAN
        if record is not None and tracer.enabled:
            record.trace = span.ids  # (sampled or not: the line still names its trace)
        ctx = RequestContext(self.state, request_id, record, span=span)
        ctx.attach(scope)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message["headers"], (b"x-request-id", rid)]
                if record is not None:
                    record.responded(message["status"])
                span.set("http.response.status_code", message["status"])
            await send(message)

        try:
            # Before routing: a path we might read differently from an upstream is refused.
            problem = path_problem(scope)
            if problem is not None:
                raise InvalidRequest(f"Invalid request path: {problem}.", code="invalid_path")
            path = scope["path"]
            if self.console is not None and (path == "/" or path.startswith("/ui")) \
                    and (len(path) <= 3 or path[3] == "/"):
                await self.console(scope, receive, send_with_id)
                return
            match = self.paths.match(path, scope["method"])
            if match is not None and match.operation_id is not None:
                scope["path_params"] = match.params or {}
                await self.operations[match.operation_id](scope, receive, send_with_id)
            elif match is not None and not (match.templated and scope["path"].startswith("/v1/")):
                raise MethodNotAllowed(
                    f"Method {clip(scope['method'])} is not allowed on {clip(scope['path'])}.",
                    headers={"allow": ", ".join(match.allowed)},
                )
            elif scope["path"].startswith("/v1/"):
                await relay(scope, receive, send_with_id)
            else:
                raise NotFound(f"Unknown path: {clip(scope['method'])} {clip(scope['path'])}.")
        except Exception as exc:
            if started:
                # The status line is out; the stream has already reported what it could.
                log.warning("error after the response started (request %s): %r", request_id, exc)
                return
            if not isinstance(exc, GatewayError):
                log.error("unhandled error in request %s", request_id, exc_info=exc)
            failure(span, exc)  # (a no-op without tracing)
            await error_response(exc)(scope, receive, send_with_id)
        finally:
            answer = ctx.answer
            if answer is not None and not answer.ended:
                await _unsent(answer, request_id)
            if record is not None:
                recorder.finish(record)  # type: ignore[union-attr]
            span.end()


async def _unsent(answer: Result, request_id: str) -> None:
    """A model call answered, but the response path failed before its relay ended the answer:
    end it here, so that its tokens reach the ledger, its limits reservation is settled and an
    upstream response is not left open."""
    log.warning("request %s: the answer from %s was never sent; ending it", request_id,
                answer.backend)
    try:
        await Relay(answer).unsent()
    except Exception:
        log.exception("ending the unsent answer of request %s failed", request_id)


def _request_span(tracer: Tracer, scope: Scope, request_id: str) -> Span:
    """The request's span, continuing the client's trace when it sent a `traceparent`."""
    trace: dict[str, str] | None = None  # (most requests carry neither header)
    for key, value in scope["headers"]:
        if key == b"traceparent" or key == b"tracestate":
            if trace is None:
                trace = {}
            trace[key.decode("latin-1")] = value.decode("latin-1")
    path = clip(scope["path"])
    return tracer.start(f"{scope['method']} {path}", trace, {
        "http.request.method": scope["method"], "url.path": path,
        "llm_gateway.request_id": request_id})


def _request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            return value.decode() if _GOOD_REQUEST_ID.match(value) else None
    return None
