"""The shared path of every model endpoint: body -> validated Call -> route -> backend -> Result.

This is the request path of DESIGN.md in one straight line; auth, limits and grouping slot in
between parsing and routing as their issues land.
"""

from __future__ import annotations

from collections.abc import Awaitable

import orjson
from starlette.requests import Request

from llm_gateway.api.body import read_body
from llm_gateway.app.state import State
from llm_gateway.backends.base import Backend
from llm_gateway.backends.headers import client_headers
from llm_gateway.backends.local import BackendSaturated
from llm_gateway.call import Call, Result
from llm_gateway.errors import InvalidRequest
from llm_gateway.metrics.recorder import RequestRecord


def parse_json(raw: bytes) -> dict:
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is expected.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


async def build_call(request: Request, operation: str, endpoint: str) -> tuple[State, Call]:
    scope = request.scope
    state: State = scope["lgw.state"]
    raw = await read_body(scope, request.receive, state.config.server.max_body_bytes)
    body = parse_json(raw)
    state.validators[operation](body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    call = Call(
        operation=operation,
        endpoint=endpoint,
        model=model,
        body=body,
        raw=raw,
        stream=operation in state.streaming_operations and body.get("stream") is True,
        request_id=scope["lgw.request_id"],
        headers=client_headers(scope["headers"], keep_encoding=False),
    )
    return state, call


def _complete(backend: Backend, call: Call, record: RequestRecord | None) -> Awaitable[Result]:
    # Not a coroutine itself: no extra frame on the path when nothing is recorded.
    if record is None:
        return backend.complete(call)
    return record.complete(backend, call)  # timed and watched for metrics and logs


async def run_call(state: State, call: Call, record: RequestRecord | None = None) -> Result:
    if record is not None:
        record.call = call
    route = state.router.resolve(call.model)
    call.target_model = route.target_model
    try:
        return await _complete(route.backend, call, record)
    except BackendSaturated as full:
        # Every local worker is busy: spill to the configured fallback model, once. Routing
        # stays here, so backends never need to know about each other.
        spill = state.router.resolve(full.fallback)
        call.target_model = spill.target_model
        try:
            return await _complete(spill.backend, call, record)
        except BackendSaturated:
            return full.result


async def model_call(request: Request, operation: str, endpoint: str) -> Result:
    state, call = await build_call(request, operation, endpoint)
    return await run_call(state, call, request.scope.get("lgw.record"))
