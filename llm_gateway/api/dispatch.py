"""The shared path of every model endpoint, DESIGN.md's request path in one straight line:

auth -> body -> validated Call -> limits -> grouping -> routing -> backend -> accounting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter, time_ns
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Scope

from llm_gateway.api import body_ids, strict_json
from llm_gateway.api.context import context
from llm_gateway.api.state import State
from llm_gateway.backends.base import Backend
from llm_gateway.backends.headers import split_client_headers
from llm_gateway.call import Call, Result
from llm_gateway.echo import MAX_MODEL_NAME
from llm_gateway.errors import GatewayError, InvalidRequest
from llm_gateway.metrics.recorder import RequestRecord
from llm_gateway.principal import Principal
from llm_gateway.routing.group import DeploymentGroup
from llm_gateway.tracing import attempt as attempts
from llm_gateway.tracing import request as traced
from llm_gateway.tracing.base import NO_SPAN
from llm_gateway.web.body import read_body


def parse_json(raw: bytes) -> dict:
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is expected.")
    try:
        body = strict_json.loads(raw)  # a key twice in one object is a 400 too
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def check_model_length(model: str) -> None:
    """A model name longer than any real one is a 400: it is never echoed, logged or recorded
    whole (model endpoints and the passthrough alike)."""
    if len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"The model name is {len(model)} characters long; at most "
                             f"{MAX_MODEL_NAME} are accepted.", param="model",
                             code="invalid_value")


async def caller(scope: Scope) -> Principal:
    """Who makes this request (authenticated once per request)."""
    ctx = context(scope)
    principal = ctx.principal
    if principal is None:
        auth = ctx.state.auth
        # (auth.mode none looks nothing up: no span says it did)
        span = ctx.span.child("gateway.auth") if auth.mode != "none" else NO_SPAN
        try:
            principal = ctx.principal = await auth.authenticate(scope)
        except BaseException as exc:
            traced.failed(span, exc)
            raise
        span.end()
        if ctx.record is not None:
            ctx.record.team = principal.team
    return principal


async def build_call(request: Request, operation: str, endpoint: str) -> tuple[State, Call]:
    scope = request.scope
    ctx = context(scope)
    state = ctx.state
    principal = await caller(scope)  # before the body: a bad key is a 401, whatever it sent
    raw = await read_body(scope, request.receive, state.config.server.max_body_bytes)
    body = parse_json(raw)
    state.validators[operation](body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    check_model_length(model)
    headers, hints = split_client_headers(scope["headers"], keep_encoding=False)
    call = Call(
        operation=operation,
        endpoint=endpoint,
        model=model,
        body=body,
        raw=raw,
        stream=operation in state.streaming_operations and body.get("stream") is True,
        request_id=ctx.request_id,
        headers=headers,
        principal=principal,
        hints=hints,
    )
    state.auth.check_model(principal, model)
    if principal.models or principal.team_models:  # a fallback model must be allowed too
        call.may_use = partial(state.auth.allowed, principal)
    if state.owners.enabled:  # another team's previous_response_id, file...: 404
        await body_ids.check_json(state.owners, principal, "POST", endpoint, body)
    ctx.call = call  # for the endpoint's own work afterwards (stored_ids.py)
    if state.tracer.enabled:
        call.span = ctx.span  # sampled or not, the next hop continues its trace
        if ctx.span.recording:
            traced.called(ctx.span, call, state.tracer.record_content)
    return state, call


def _complete(backend: Backend, call: Call, record: RequestRecord | None) -> Awaitable[Result]:
    # Not a coroutine itself: no extra frame on the path when nothing is recorded.
    if record is None:
        return backend.complete(call)
    # Timed and watched for metrics and logs (a spill-over included: routing/router.py).
    return record.complete(backend.name, backend.complete(call), backend.reports_attempts)


async def run_call(state: State, call: Call, record: RequestRecord | None = None) -> Result:
    """Routing and the backend call (what grouping runs once for a group of calls)."""
    if record is not None:
        record.call = call
    route = state.router.resolve(call.model)
    call.target_model = route.target_model
    principal = call.principal
    if principal is not None and principal.credentials:
        call.credentials = principal.credentials_for(route.backend.name)
    backend = route.backend
    try:
        if not call.span.recording or isinstance(backend, DeploymentGroup):
            return await _complete(backend, call, record)  # a group traces each try
        # A plain route's one backend call, in its attempt span (inline: no coroutine more).
        parent, span = attempts.begin(call, backend.name)
        try:
            result = await _complete(backend, call, record)
        except BaseException as exc:
            attempts.raised(call, parent, span, exc)
            raise
        attempts.answered(call, parent, span, result)
        return result
    except GatewayError as exc:
        # (A group, or a spill-over to one, names the backend that failed, if one did.)
        if exc.backend is None and not backend.reports_attempts:
            exc.backend = backend.name
        raise


async def model_call(request: Request, operation: str, endpoint: str) -> Result:
    state, call = await build_call(request, operation, endpoint)
    return await dispatch(request, state, call)


async def dispatch(request: Request, state: State, call: Call) -> Result:
    """A built call's way on: limits, grouping, routing and the backend, accounting."""
    started = perf_counter()
    ctx = context(request.scope)
    record = ctx.record
    principal = await caller(request.scope)  # what build_call authenticated (kept in scope)
    span = ctx.span
    checked = span.recording and state.gate.applies(principal)  # (no limits: no span)
    limits = span.child("gateway.limits") if checked else NO_SPAN
    try:
        admission = await state.gate.admit(principal, call)  # 429 when over a limit
    except BaseException as exc:
        traced.failed(limits, exc)  # (a no-op without a recording span)
        raise
    limits.end()
    accountant = state.accountant
    # Grouping's span runs from here until the backend call starts (or a shared answer
    # comes); it is made once the answer says grouping took part, not for a call it let
    # straight through (traced.answered).
    waits_from = time_ns() if span.recording else 0
    called_at = 0

    def backend_call(c: Call) -> Awaitable[Result]:
        nonlocal called_at
        if waits_from and not called_at:
            called_at = time_ns()
        return run_call(state, c, record)

    try:
        accountant.prepare(call)
        result = await state.grouper.run(call, principal, backend_call)
    except BaseException as exc:
        if waits_from and not called_at:  # no call of its own: a shared one failed
            traced.grouping_failed(span, waits_from, exc)
        if not isinstance(exc, GatewayError):
            admission.settle(0, 0.0)
            raise
        accountant.failed(call, admission, exc, started)
        if record is not None:
            record.raised(exc)
        raise
    also: Callable[[Any], None] | None = None  # what the meter's measure goes to, besides
    if record is not None:
        record.metering = True
        record.routed(result)
        also = record.metered
        if record.recorder.access.with_bodies():
            record.copy_of_answer(result)
    if span.recording:
        also = traced.answered(span, (waits_from, called_at), result,
                               state.tracer.record_content, also)
    result = ctx.answer = accountant.track(call, admission, result, started, also)
    if admission.headers:
        result.headers.extend(admission.headers)
    return result
