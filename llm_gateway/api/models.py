"""GET /v1/models and GET /v1/models/{model}"""

from __future__ import annotations

import orjson
from starlette.requests import Request

from llm_gateway.api.context import context
from llm_gateway.api.dispatch import caller
from llm_gateway.echo import clip
from llm_gateway.errors import ModelNotFound
from llm_gateway.web.responses import BytesResponse

_JSON = [(b"content-type", b"application/json")]


async def list_models(request: Request) -> BytesResponse:
    principal = await caller(request.scope)
    state = context(request.scope).state
    # Only what this key may use: a list a client can pick from without meeting a 403.
    models = [m for m in await state.catalog.models() if state.auth.allowed(principal, m["id"])]
    return BytesResponse(200, orjson.dumps({"object": "list", "data": models}), list(_JSON))


async def retrieve_model(request: Request) -> BytesResponse:
    principal = await caller(request.scope)
    state = context(request.scope).state
    name = request.path_params["model"]
    if not state.auth.allowed(principal, name):
        # OpenAI's answer for a model the key has no access to: it does not exist for it.
        raise ModelNotFound(f"The model '{clip(name)}' does not exist or you do not have access "
                            "to it.", param="model")
    model = await state.catalog.get(name)
    return BytesResponse(200, orjson.dumps(model), list(_JSON))
