"""POST /v1/embeddings"""

from starlette.requests import Request

from llm_gateway.api.dispatch import model_call
from llm_gateway.api.result import to_response


async def create_embedding(request: Request):
    return to_response(await model_call(request, "createEmbedding", "/embeddings"))
