"""POST /v1/chat/completions

A completion made with `store: true` can be read back later (`GET /v1/chat/completions/{id}`,
through the passthrough): it becomes its caller's, like any stored object (stored_ids.py).
"""

from starlette.requests import Request

from llm_gateway.api import stored_ids
from llm_gateway.api.context import context
from llm_gateway.api.dispatch import caller, model_call
from llm_gateway.api.result import to_response


async def create_chat_completion(request: Request):
    result = await model_call(request, "createChatCompletion", "/chat/completions")
    ctx = context(request.scope)
    call = ctx.call
    if result.status == 200 and call is not None and call.body.get("store") is True:
        stored_ids.claim(ctx.state, await caller(request.scope),
                               "chat_completion", result, stored_ids.id_of, stored_ids.id_of)
    return to_response(result)
