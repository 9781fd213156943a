"""GET /v1/models and GET /v1/models/{model}"""

from __future__ import annotations

import orjson
from starlette.requests import Request

from llm_gateway.app.responses import BytesResponse

_JSON = [(b"content-type", b"application/json")]


async def list_models(request: Request) -> BytesResponse:
    models = await request.scope["lgw.state"].catalog.list()
    return BytesResponse(200, orjson.dumps({"object": "list", "data": models}), list(_JSON))


async def retrieve_model(request: Request) -> BytesResponse:
    model = await request.scope["lgw.state"].catalog.get(request.path_params["model"])
    return BytesResponse(200, orjson.dumps(model), list(_JSON))
