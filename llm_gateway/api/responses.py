"""POST /v1/responses, GET and DELETE /v1/responses/{response_id}

A stored response lives on the upstream that created it, so the gateway remembers which
backend made each response id, and for whom (auth/ownership.py: in the database, cached), and
sends later reads and deletes there. Only the creator's team (or key, for a key without a
team) may read or delete it: for anyone else it does not exist (404). An id the gateway never
saw created is refused in auth.mode keys (unless auth.unknown_objects: forward) and forwarded
to the passthrough upstream otherwise.
"""

from __future__ import annotations

from starlette.requests import Request

from llm_gateway.api import stored_ids
from llm_gateway.api.context import context
from llm_gateway.api.dispatch import caller, model_call
from llm_gateway.api.passthrough import forward_request
from llm_gateway.api.result import to_response
from llm_gateway.auth.ownership import not_found
from llm_gateway.call import Result

KIND = "response"


async def create_response(request: Request):
    state = context(request.scope).state
    result = await model_call(request, "createResponse", "/responses")
    if result.status == 200:
        stored_ids.claim(state, await caller(request.scope), KIND, result, _stored_id,
                               lambda event: _stored_id(_field(event, "response")))
    return to_response(result)


async def get_response(request: Request):
    return to_response(await _forward(request))


async def delete_response(request: Request):
    return to_response(await _forward(request))


async def _forward(request: Request) -> Result:
    scope = request.scope
    state = context(scope).state
    response_id = request.path_params["response_id"]
    # Someone else's (or, in keys mode, nobody's): 404, not even its existence is told.
    owned = await state.owners.check(KIND, response_id, await caller(scope))
    made_by = state.backends.get(owned.backend) if owned and owned.backend else None
    backend = made_by if hasattr(made_by, "forward") else state.passthrough
    if backend is None:
        raise not_found(KIND, response_id)
    return await forward_request(backend, scope, None)  # type: ignore[arg-type]


def _stored_id(response: object) -> str | None:
    """The id of a response object, unless it says it is not stored (nothing to reach)."""
    if isinstance(response, dict) and response.get("store") is False:
        return None
    return stored_ids.id_of(response)


def _field(event: object, name: str) -> object:
    return event.get(name) if isinstance(event, dict) else None
