"""Anthropic Messages and errors -> OpenAI chat completions and errors."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.backends.anthropic_answer import chat_completion, openai_error
from llm_gateway.usage import Usage

USAGE = {"input_tokens": 12, "output_tokens": 7, "cache_creation_input_tokens": 100,
         "cache_read_input_tokens": 900}


def message(content: list, stop_reason: str = "end_turn", usage: dict | None = None) -> dict:
    return {"id": "msg_01abc", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": content,
            "stop_reason": stop_reason, "stop_sequence": None, "usage": usage or USAGE}


def test_text_blocks_become_the_message_content() -> None:
    answer = chat_completion(message([{"type": "text", "text": "Hello "},
                                      {"type": "text", "text": "world"}]), "claude", 1700)
    assert answer["id"] == "msg_01abc"  # Anthropic's own id, kept
    assert answer["object"] == "chat.completion"
    assert answer["created"] == 1700
    assert answer["model"] == "claude-sonnet-4-5-20250929"
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello world", "refusal": None}
    assert choice["finish_reason"] == "stop"


def test_usage_counts_cache_tokens_in_the_prompt_and_as_cached() -> None:
    usage = chat_completion(message([{"type": "text", "text": "x"}]), "m")["usage"]
    assert usage == {"prompt_tokens": 1012, "completion_tokens": 7, "total_tokens": 1019,
                     "prompt_tokens_details": {"cached_tokens": 900}}
    # ...and the gateway's own reader (accounting) sees the same counts.
    assert Usage.from_object(usage) == Usage(1012, 7, 900, 1019)


def test_tool_use_blocks_become_tool_calls() -> None:
    answer = chat_completion(message([
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ], "tool_use"), "m")
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look."
    call = choice["message"]["tool_calls"][0]
    assert call == {"id": "toolu_1", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    only_calls = chat_completion(message([{"type": "tool_use", "id": "t", "name": "f",
                                           "input": {}}], "tool_use"), "m")
    assert only_calls["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(("reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter")])
def test_stop_reasons_map(reason: str, finish: str) -> None:
    answer = chat_completion(message([{"type": "text", "text": "x"}], reason), "m")
    assert answer["choices"][0]["finish_reason"] == finish


def anthropic_error(type_: str, text: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": text}})


@pytest.mark.parametrize(("status", "type_", "expected"), [
    (400, "invalid_request_error", (400, "invalid_request_error", None)),
    (401, "authentication_error", (401, "invalid_request_error", "invalid_api_key")),
    (403, "permission_error", (403, "invalid_request_error", "permission_denied")),
    (404, "not_found_error", (404, "invalid_request_error", "not_found")),
    (413, "request_too_large", (413, "invalid_request_error", "request_too_large")),
    (429, "rate_limit_error", (429, "rate_limit_exceeded", "rate_limit_exceeded")),
    (500, "api_error", (500, "server_error", None)),
    (529, "overloaded_error", (503, "server_error", "overloaded")),
])
def test_errors_map_to_openai_statuses_and_shapes(status: int, type_: str,
                                                  expected: tuple) -> None:
    new_status, body = openai_error(status, anthropic_error(type_, "Something"), "anth")
    error = body["error"]
    assert (new_status, error["type"], error["code"]) == expected
    assert error["message"] == "Something"
    assert set(error) == {"message", "type", "param", "code"}


def test_a_prompt_too_long_is_context_length_exceeded() -> None:
    status, body = openai_error(400, anthropic_error(
        "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"), "a")
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages"


def test_an_answer_not_in_anthropics_shape_names_only_the_status() -> None:
    status, body = openai_error(529, b"<html>proxy error secret-host:443</html>", "anth")
    assert status == 503
    assert body["error"]["message"] == "upstream 'anth' answered 529"
    assert body["error"]["type"] == "server_error"
