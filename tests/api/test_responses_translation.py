"""The translation itself (api/responses_chat/), on chat answers a backend could send that the
fake upstream does not: text then parallel tool calls, refusals, logprobs, an error event mid-
stream, a stream cut short, one without [DONE]; and request fields mapped one by one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from llm_gateway.api.responses_chat.output import Shape, from_chat_completion
from llm_gateway.api.responses_chat.request import chat_body
from llm_gateway.api.responses_chat.stream import Translator, blocks
from llm_gateway.call import Result
from llm_gateway.errors import InvalidRequest
from llm_gateway.stream.events import parse
from llm_gateway.stream.observer import End, Observer
from llm_gateway.stream.relay import Relay

REQUEST = {"model": "m", "input": "hi"}


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish,
                                         **extra}]
    return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk",
                                     "choices": choices}) + b"\n\n"


USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5, ' \
        b'"total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}}\n\n'
DONE = b"data: [DONE]\n\n"


class Ends(Observer):
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def ended(self, end: End) -> None:
        self.outcomes.append(end.outcome)


async def translate(*chat: bytes) -> tuple[list[dict], list[str], Translator]:
    """The Responses events for a chat stream made of `chat` blocks, and how the chat answer's
    relay ended (what its observers were told)."""
    async def source() -> AsyncIterator[bytes]:
        for block in chat:
            yield block

    result = Result(200, stream=source(), media_type="text/event-stream")
    ends = Ends()
    result.observe(ends)
    translator = Translator(Shape(REQUEST, store=True))
    result.observe(translator)
    relay = Relay(result)
    out = b"".join([b async for b in blocks(relay, translator)])
    await relay.aclose()
    events = [orjson.loads(e.data_bytes) for e in parse(out)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert out.count(b"event: ") == len(events)  # every event named, as OpenAI's
    return events, ends.outcomes, translator


async def test_text_then_two_tool_calls():
    events, outcomes, translator = await translate(
        chunk({"role": "assistant", "content": "Let me"}), chunk({"content": " look."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]})
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), USAGE, DONE)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    final = events[-1]["response"]
    message, first, second = final["output"]
    assert message["content"][0]["text"] == "Let me look." == events[6]["text"]
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_a", "f", '{"x": 1}')
    assert (second["call_id"], second["name"], second["arguments"]) == ("call_b", "g", "{}")
    assert [events[i]["output_index"] for i in (2, 9, 14)] == [0, 1, 2]
    assert final["status"] == "completed" and final is not None
    assert final["usage"] == {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 4},
                              "output_tokens": 5,
                              "output_tokens_details": {"reasoning_tokens": 0},
                              "total_tokens": 12}
    assert translator.final == final and outcomes == ["ok"]


async def test_a_refusal_and_logprobs():
    token = {"token": "No", "logprob": -0.1, "bytes": [78, 111], "top_logprobs": []}
    events, _, _ = await translate(
        chunk({"content": "No"}, logprobs={"content": [token]}),
        chunk({"refusal": "I can't."}), chunk({}, "stop"), DONE)
    kinds = [e["type"] for e in events]
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    assert events[4]["logprobs"] == [token]
    content = events[-1]["response"]["output"][0]["content"]
    assert content == [{"type": "output_text", "text": "No", "annotations": [],
                        "logprobs": [token]}, {"type": "refusal", "refusal": "I can't."}]


async def test_an_error_event_fails_the_response():
    error = b'data: {"error": {"message": "worker died", "type": "server_error", ' \
            b'"code": "upstream_unavailable"}}\n\n'
    events, outcomes, _ = await translate(chunk({"content": "Hal"}), error)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "upstream_unavailable" and events[-2]["param"] is None
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"] == "worker died"
    assert failed["output"][0]["status"] == "incomplete"
    assert outcomes == ["upstream_error"]


async def test_a_stream_cut_short_fails_and_one_without_done_completes():
    events, _, _ = await translate(chunk({"content": "Hal"}))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    events, _, _ = await translate(chunk({"content": "Hi"}), chunk({}, "length"), USAGE)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_an_empty_answer_is_an_empty_message():
    events, _, _ = await translate(chunk({"role": "assistant", "content": ""}),
                                   chunk({}, "stop"), DONE)
    assert [e["type"] for e in events][2:] == [
        "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    whole = from_chat_completion(Shape(REQUEST, store=False), {"choices": [{
        "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]})
    assert whole["output"][0]["content"][0]["text"] == "" and whole["store"] is False
    assert whole["usage"] is None


def test_request_fields_map_to_chat():
    body = {"model": "m", "input": "x", "reasoning": {"effort": "low"},
            "text": {"verbosity": "low", "format": {"type": "text"}},
            "include": ["message.output_text.logprobs"], "top_logprobs": 2,
            "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}],
            "tool_choice": {"type": "allowed_tools", "mode": "required",
                            "tools": [{"type": "function", "name": "b"}]},
            "parallel_tool_calls": False, "user": "u1", "metadata": {"k": "v"},
            "store": True, "max_tool_calls": 3, "top_k": 40, "stream": True}
    chat = chat_body(body, [{"role": "user", "content": "x"}], "m")
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "x"}],
                    "reasoning_effort": "low", "verbosity": "low", "logprobs": True,
                    "top_logprobs": 2, "tools": [{"type": "function",
                                                  "function": {"name": "b"}}],
                    "tool_choice": "required", "parallel_tool_calls": False, "user": "u1",
                    "top_k": 40,  # not a Responses field: the backend's own, passed on
                    "stream": True, "stream_options": {"include_usage": True}}


def test_parallel_tool_calls_alone_is_not_sent_and_a_forced_tool_needs_tools():
    chat = chat_body({"model": "m", "parallel_tool_calls": True}, [], "m")
    assert "parallel_tool_calls" not in chat and "tools" not in chat
    with pytest.raises(InvalidRequest) as err:
        chat_body({"model": "m", "tool_choice": "required"}, [], "m")
    assert err.value.param == "tool_choice"
