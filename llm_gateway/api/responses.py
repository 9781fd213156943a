"""POST /v1/responses, GET and DELETE /v1/responses/{response_id}, GET .../input_items

A model whose backend has no Responses API is answered through chat completions, and the
gateway keeps those responses itself (responses_chat/). Otherwise:

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
from llm_gateway.api.dispatch import build_call, caller, dispatch
from llm_gateway.api.passthrough import forward_request
from llm_gateway.api.responses_chat import stored
from llm_gateway.api.responses_chat.create import translated
from llm_gateway.api.responses_chat.store import Stored
from llm_gateway.api.result import to_response
from llm_gateway.auth.objectstore import Owned
from llm_gateway.auth.ownership import not_found, owner_of
from llm_gateway.call import Result

KIND = "response"


async def create_response(request: Request):
    state, call = await build_call(request, "createResponse", "/responses")
    # A model whose backend speaks only chat completions: answered through them.
    answer = await translated(request, state, call)
    if answer is not None:
        return to_response(answer)
    result = await dispatch(request, state, call)
    if result.status == 200:
        stored_ids.claim(state, await caller(request.scope), KIND, result, _stored_id,
                               lambda event: _stored_id(_field(event, "response")))
    return to_response(result)


async def get_response(request: Request):
    owned, kept = await _find(request)
    if kept is not None:
        return to_response(stored.get(kept, dict(request.query_params)))
    return to_response(await _forward(request, owned))


async def delete_response(request: Request):
    owned, kept = await _find(request)
    if kept is not None:
        if not await context(request.scope).state.conversations.delete(
                kept.id, owner_of(await caller(request.scope))):
            raise not_found(KIND, kept.id)  # deleted already (or just now, elsewhere)
        return to_response(stored.deleted(kept))
    return to_response(await _forward(request, owned))


async def list_input_items(request: Request):
    owned, kept = await _find(request)
    if kept is not None:
        return to_response(stored.input_items(kept, dict(request.query_params)))
    return to_response(await _forward(request, owned))


async def _find(request: Request) -> tuple[Owned | None, Stored | None]:
    """Who owns the path's response (404 when not the caller), and the response itself when
    the gateway keeps it (translated to chat: responses_chat/)."""
    scope = request.scope
    state = context(scope).state
    response_id = request.path_params["response_id"]
    principal = await caller(scope)
    # Someone else's (or, in keys mode, nobody's): 404, not even its existence is told.
    owned = await state.owners.check(KIND, response_id, principal)
    return owned, await state.conversations.find(response_id, owner_of(principal))


async def _forward(request: Request, owned: Owned | None) -> Result:
    """To the upstream that made the response (or the passthrough upstream, for an id the
    gateway never saw made)."""
    state = context(request.scope).state
    made_by = state.backends.get(owned.backend) if owned and owned.backend else None
    backend = made_by if hasattr(made_by, "forward") else state.passthrough
    if backend is None:
        raise not_found(KIND, request.path_params["response_id"])
    return await forward_request(backend, request.scope, None)  # type: ignore[arg-type]


def _stored_id(response: object) -> str | None:
    """The id of a response object, unless it says it is not stored (nothing to reach)."""
    if isinstance(response, dict) and response.get("store") is False:
        return None
    return stored_ids.id_of(response)


def _field(event: object, name: str) -> object:
    return event.get(name) if isinstance(event, dict) else None
