"""What a request span says about the call (genai.py): numbers only when they are numbers,
the token limit from whichever field the client used, stop sequences as a list."""

from __future__ import annotations

import orjson

from llm_gateway.call import Call
from llm_gateway.tracing.genai import call_attributes


def _call(body: dict) -> Call:
    return Call(operation="createChatCompletion", endpoint="/chat/completions",
                model="m", body=body, raw=orjson.dumps(body), stream=False, request_id="r")


def test_request_numbers_are_recorded_and_nothing_else():
    attrs = call_attributes(_call({
        "model": "m", "messages": [], "temperature": 0.5, "top_p": 1, "seed": 7, "n": 2,
        "presence_penalty": True, "frequency_penalty": "0.1", "max_tokens": None,
        "stop": "END"}))
    assert attrs == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
        "llm_gateway.stream": False, "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 1, "gen_ai.request.seed": 7,
        "gen_ai.request.choice.count": 2, "gen_ai.request.stop_sequences": ("END",)}


def test_the_token_limit_prefers_max_completion_tokens_in_either_order():
    for body in ({"max_tokens": 5, "max_completion_tokens": 9},
                 {"max_completion_tokens": 9, "max_tokens": 5}):
        assert call_attributes(_call(body))["gen_ai.request.max_tokens"] == 9
    assert call_attributes(_call({"max_tokens": 5}))["gen_ai.request.max_tokens"] == 5
    assert call_attributes(_call({"stop": ["a", 1]})).get("gen_ai.request.stop_sequences") \
        is None  # not all strings: left out
