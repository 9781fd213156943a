"""POST /v1/chat/completions"""

from starlette.requests import Request

from llm_gateway.api.dispatch import model_call
from llm_gateway.api.result import to_response


async def create_chat_completion(request: Request):
    return to_response(await model_call(request, "createChatCompletion", "/chat/completions"))
