"""POST /v1/responses answered through chat completions, and kept by the gateway.

A call is translated when its model's route reaches a backend without the Responses API
(`Backend.responses_api`; a deployment group only when all it may reach have it), or when it
continues a conversation the gateway keeps (`previous_response_id` of a translated response,
which no upstream knows: chat completions reach every backend). Otherwise it is relayed as it
came (`None` here).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from starlette.requests import Request

from llm_gateway.api.dispatch import dispatch
from llm_gateway.api.responses_chat.items import chat_messages, input_items
from llm_gateway.api.responses_chat.output import Shape, from_chat_completion
from llm_gateway.api.responses_chat.request import chat_body, instructions
from llm_gateway.api.responses_chat.stream import Translator, blocks
from llm_gateway.api.state import State
from llm_gateway.auth.ownership import owner_of
from llm_gateway.call import Call, Result
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest, NotFound, UpstreamUnavailable
from llm_gateway.principal import Principal
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import Observer, Stage
from llm_gateway.stream.relay import Relay

log = logging.getLogger(__name__)

CHAT = ("createChatCompletion", "/chat/completions")
KIND = "response"


async def translated(request: Request, state: State, call: Call) -> Result | None:
    """The answer to `call` (a built createResponse call) through chat completions, or None
    when its backend serves the Responses API itself."""
    principal = call.principal
    assert principal is not None  # build_call authenticated
    owner = owner_of(principal)
    previous = call.body.get("previous_response_id")
    history = None
    if isinstance(previous, str) and previous:
        history = await state.conversations.history(previous, owner)
    native = state.router.resolve(call.model).backend.responses_api
    if history is None:
        if native:
            return None
        if isinstance(previous, str) and previous:  # an upstream's, or nobody's: unreadable
            raise NotFound(f"Previous response with id '{clip(previous)}' not found.",
                           param="previous_response_id")
    history = history or []
    # As the client sent it: the validator filled in the schema's defaults (temperature 1...),
    # which a chat backend must not take for the client's choices.
    body = orjson.loads(call.raw)
    items = input_items(body.get("input"), {i["id"]: i for i in history if "id" in i})
    messages = chat_messages([*history, *items])
    if not messages:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input",
                             code="missing_required_parameter")
    chat = chat_body(body, [*instructions(body), *messages], call.model)
    call.operation, call.endpoint = CHAT
    call.body = chat
    call.raw = orjson.dumps(chat)
    result = await dispatch(request, state, call)
    if result.status != 200:
        return result  # an OpenAI-shaped error: the same for either API
    shape = Shape(body, store=body.get("store") is not False)
    if result.stream is not None:
        translator = Translator(shape)
        result.observe(translator)
        relay = Relay(result)  # the chat answer's own loop, pulled by the Responses stream
        answer = _like(result, stream=blocks(relay, translator), close=relay.aclose,
                       on_gone=relay.gone)
        keep = _Keep(state, principal, items, answer.backend, translator=translator)
    else:
        response = await _whole(result, shape)
        answer = _like(result, body=orjson.dumps(response), media_type="application/json")
        keep = _Keep(state, principal, items, answer.backend, response=response)
    if shape.store:
        answer.observe(keep)
    return answer


async def _whole(result: Result, shape: Shape) -> dict:
    await Relay(result).whole()  # the chat answer's own observers: the meter, the log...
    try:
        return from_chat_completion(shape, orjson.loads(result.body))
    except (orjson.JSONDecodeError, ValueError):
        raise UpstreamUnavailable(f"The backend '{result.backend}' answered something that is "
                                  "not a chat completion.", code="invalid_upstream_answer"
                                  ) from None


def _like(chat: Result, **answer: Any) -> Result:
    """The Responses answer: where the chat answer came from (backend, deployment...) and its
    headers, with a body or stream of its own, and its own observers."""
    fresh: dict[str, Any] = {"body": b"", "stream": None, "close": None, "on_gone": None,
                             "observers": []}
    return replace(chat, headers=list(chat.headers), **{**fresh, **answer})


@dataclass(eq=False)
class _Keep(Observer):
    """The response becomes its caller's, stored, before the client sees its end (so that it
    can be continued at once): with the whole body (`response`), or the block of the stream's
    last event (once its `translator` has written it)."""

    stage = Stage.CLAIM
    state: State
    principal: Principal
    items: list[dict]  # this turn's input items
    backend: str
    response: dict | None = None
    translator: Translator | None = None
    kept: bool = False

    def whole(self, status: int, body: bytes) -> Awaitable[None] | None:
        return self._keep()

    def block(self, block: Block) -> Awaitable[None] | None:
        return None if self.kept else self._keep()

    def _keep(self) -> Awaitable[None] | None:
        response = self.response if self.translator is None else self.translator.final
        if response is None:
            return None
        self.kept = True
        return self._save(response)

    async def _save(self, response: dict) -> None:
        try:
            stored = await self.state.conversations.save(
                response, owner_of(self.principal), self.items, self.backend)
            if stored:
                await self.state.owners.claim(KIND, response["id"], self.principal,
                                              self.backend)
        except Exception as exc:  # the answer goes on; the response just cannot be reached
            log.error("cannot store response %s: %r", response.get("id"), exc)
