"""OpenAI chat bodies -> Anthropic Messages bodies: what is translated, and what is refused
with a 400 naming the field (nothing is dropped on the way)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.backends.anthropic_request import messages_request
from llm_gateway.errors import InvalidRequest

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAA"
       "ABJRU5ErkJggg==")  # a 1x1 PNG


def translate(body: dict[str, Any], *, stream: bool = False, default: int = 4096) -> dict:
    return messages_request({"model": "claude", **body}, "claude-x", default, stream=stream)


def user(text: str = "Hi") -> dict:
    return {"role": "user", "content": text}


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate(body)
    assert caught.value.status == 400
    return caught.value


def test_minimal_request_gets_the_model_and_the_default_max_tokens() -> None:
    out = translate({"messages": [user("Hello")]}, default=321)
    assert out == {"model": "claude-x", "max_tokens": 321,
                   "messages": [{"role": "user", "content": [{"type": "text",
                                                              "text": "Hello"}]}]}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert translate({"messages": [user()], "max_tokens": 10})["max_tokens"] == 10
    assert translate({"messages": [user()], "max_tokens": 10,
                      "max_completion_tokens": 20})["max_tokens"] == 20


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    out = translate({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        user("Bonjour"),
    ]})
    assert out["system"] == [{"type": "text", "text": "Be brief."},
                             {"type": "text", "text": "Use French."}]
    assert [t["role"] for t in out["messages"]] == ["user"]


def test_images_become_base64_or_url_sources() -> None:
    out = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                            "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]})
    blocks = out["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64",
                                                    "media_type": "image/png", "data": PNG}}
    assert blocks[2] == {"type": "image", "source": {"type": "url",
                                                    "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("url", ["data:text/plain;base64,aGk=", "data:image/png,raw",
                                 "ftp://example.com/a.png"])
def test_images_that_cannot_be_sent_are_refused(url: str) -> None:
    error = refused({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]})
    assert error.param == "messages[0].content[0].image_url.url"


def test_tool_calls_and_results_round_trip_into_blocks() -> None:
    out = translate({
        "messages": [
            user("Weather in Paris and Rome?"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
                {"id": "toolu_2", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2",
             "content": [{"type": "text", "text": "rain"}]},
            user("Thanks"),
        ],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required", "parallel_tool_calls": False,
    })
    turns = out["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}}]
    # The two results share one user turn, before the user's next words.
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2",
         "content": [{"type": "text", "text": "rain"}]},
        {"type": "text", "text": "Thanks"}]
    assert out["tools"] == [{"name": "weather", "description": "Current weather",
                             "input_schema": {"type": "object",
                                              "properties": {"city": {"type": "string"}}}}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
])
def test_tool_choice_maps(choice: Any, expected: dict) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    out = translate({"messages": [user()], "tools": tools, "tool_choice": choice})
    assert out["tool_choice"] == expected
    assert out["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


def test_tool_arguments_that_are_not_an_object_are_refused() -> None:
    error = refused({"messages": [user(), {"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]})
    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_sampling_stop_user_and_stream() -> None:
    out = translate({"messages": [user()], "temperature": 0.5, "top_p": 0.9, "stop": "END",
                     "user": "alice", "stream": True,
                     "stream_options": {"include_usage": True}}, stream=True)
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.5, 0.9, ["END"])
    assert out["metadata"] == {"user_id": "alice"}
    assert out["stream"] is True
    assert translate({"messages": [user()], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_temperature_above_one_is_refused_not_clamped() -> None:
    error = refused({"messages": [user()], "temperature": 1.5})
    assert error.param == "temperature"
    assert "0 to 1" in error.message
    assert translate({"messages": [user()], "temperature": 1})["temperature"] == 1


@pytest.mark.parametrize(("field", "value"), [
    ("n", 2), ("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5), ("frequency_penalty", 1), ("seed", 7),
    ("response_format", {"type": "json_object"}), ("audio", {"voice": "alloy"}),
    ("modalities", ["text", "audio"]), ("store", True), ("reasoning_effort", "high"),
    ("prediction", {"type": "content", "content": "x"}), ("some_new_field", 1),
])
def test_fields_without_an_equivalent_are_refused_by_name(field: str, value: Any) -> None:
    error = refused({"messages": [user()], field: value})
    assert error.param == field
    assert f"'{field}'" in error.message
    assert error.code == "unsupported_parameter"


@pytest.mark.parametrize(("field", "value"), [
    ("n", 1), ("logprobs", False), ("presence_penalty", 0), ("frequency_penalty", 0.0),
    ("response_format", {"type": "text"}), ("store", False), ("seed", None),
    ("logit_bias", {}),
])
def test_neutral_values_are_accepted(field: str, value: Any) -> None:
    assert translate({"messages": [user()], field: value})["messages"]


@pytest.mark.parametrize(("message", "param"), [
    ({"role": "user", "content": "hi", "name": "bob"}, "messages[0].name"),
    ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
    ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
     "messages[0].content[0].type"),
    ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
     "messages[0].content[0].type"),
])
def test_message_parts_without_an_equivalent_are_refused(message: dict, param: str) -> None:
    assert refused({"messages": [message]}).param == param


def test_strict_tools_and_other_tool_types_are_refused() -> None:
    strict = [{"type": "function", "function": {"name": "f", "strict": True}}]
    assert refused({"messages": [user()], "tools": strict}).param == "tools[0].function.strict"
    custom = [{"type": "custom", "custom": {"name": "f"}}]
    assert refused({"messages": [user()], "tools": custom}).param == "tools[0].type"
    assert refused({"messages": [user()], "tool_choice": "required"}).param == "tool_choice"


def test_an_sdk_message_sent_back_keeps_its_empty_fields_harmless() -> None:
    echoed = {"role": "assistant", "content": "Hello", "refusal": None, "annotations": [],
              "audio": None, "function_call": None, "tool_calls": None}
    out = translate({"messages": [user(), echoed, user("more")]})
    assert out["messages"][1] == {"role": "assistant",
                                  "content": [{"type": "text", "text": "Hello"}]}


def test_cache_control_on_a_part_goes_through() -> None:
    part = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    out = translate({"messages": [{"role": "system", "content": [part]}, user()]})
    assert out["system"] == [part]
