"""GET /v1/models and GET /v1/models/{model}"""

from __future__ import annotations

import orjson
from starlette.requests import Request

from llm_gateway.api.dispatch import caller
from llm_gateway.app.responses import BytesResponse

_JSON = [(b"content-type", b"application/json")]


async def list_models(request: Request) -> BytesResponse:
    await caller(request.scope)
    models = await request.scope["lgw.state"].catalog.list()
    return BytesResponse(200, orjson.dumps({"object": "list", "data": models}), list(_JSON))


async def retrieve_model(request: Request) -> BytesResponse:
    await caller(request.scope)
    model = await request.scope["lgw.state"].catalog.get(request.path_params["model"])
    return BytesResponse(200, orjson.dumps(model), list(_JSON))
