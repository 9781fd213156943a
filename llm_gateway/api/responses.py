"""POST /v1/responses, GET and DELETE /v1/responses/{response_id}

A stored response lives on the upstream that created it, so the gateway remembers (bounded)
which backend made each response id, and for whom, and sends later reads and deletes there.
Only the creator's team (or key, for a key without a team) may read or delete it: for anyone
else a remembered id does not exist (404). An id the gateway does not remember (made before
a restart, or on another replica) is forwarded as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request

from llm_gateway.api.dispatch import caller, model_call
from llm_gateway.api.passthrough import forward_request
from llm_gateway.api.result import to_response
from llm_gateway.app.state import State
from llm_gateway.auth.principal import Principal
from llm_gateway.call import Result
from llm_gateway.errors import NotFound


async def create_response(request: Request):
    state: State = request.scope["lgw.state"]
    result = await model_call(request, "createResponse", "/responses")
    if result.status == 200:
        owner = _owner(await caller(request.scope))
        if result.stream is not None:
            result.stream = _remember_from_stream(state, (result.backend, owner), result.stream)
        else:
            _remember(state, (result.backend, owner), _id_of(result.body))
    return to_response(result)


async def get_response(request: Request):
    return to_response(await _forward(request))


async def delete_response(request: Request):
    return to_response(await _forward(request))


async def _forward(request: Request) -> Result:
    scope = request.scope
    state: State = scope["lgw.state"]
    response_id = request.path_params["response_id"]
    missing = NotFound(f"No response found with id '{response_id}'.", param="response_id")
    known: _Made | None = state.response_owners.get(response_id)
    made_by = None
    if known is not None:
        name, owner = known
        if owner != _owner(await caller(scope)):
            raise missing  # someone else's: not even its existence is told
        made_by = state.backends.get(name)
    backend = made_by if hasattr(made_by, "forward") else state.passthrough
    if backend is None:
        raise missing
    return await forward_request(backend, scope, None)  # type: ignore[arg-type]


# (backend name, owner): where a stored response lives and who may reach it.
_Made = tuple[str, str]


def _owner(principal: Principal) -> str:
    return f"team:{principal.team}" if principal.team else f"key:{principal.key_id}"


def _remember(state: State, made: _Made, response_id: str | None) -> None:
    if response_id:
        state.response_owners.remember(response_id, made)  # type: ignore[arg-type]


def _id_of(body: bytes) -> str | None:
    try:
        value = orjson.loads(body).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def _remember_from_stream(
    state: State, made: _Made, blocks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    # The first event (response.created) carries the id; later blocks pass untouched.
    first = True
    try:
        async for block in blocks:
            if first:
                first = False
                _remember(state, made, _stream_id(block))
            yield block
    finally:
        await blocks.aclose()  # type: ignore[attr-defined]


def _stream_id(block: bytes) -> str | None:
    for line in block.splitlines():
        if line.startswith(b"data:"):
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            response = event.get("response") if isinstance(event, dict) else None
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                return response["id"]
    return None
