"""Chat completions through the gateway to an Anthropic upstream (the fake, a real server
speaking the Messages API), driven by the official openai SDK: what Anthropic receives, and
what the client gets back, whole and streamed."""

from __future__ import annotations

import json

import openai
import pytest

from llm_gateway.testing.fake_anthropic import FakeAnthropic

from anthropic_support import (
    ANTHROPIC_KEY,
    DEFAULT_MAX_TOKENS,
    UPSTREAM_MODEL,
    Served,
    ledger_record,
    new_request_id,
)

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAA"
       "ABJRU5ErkJggg==")  # a 1x1 PNG
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}


def sent(fake: FakeAnthropic) -> dict:
    """The one Messages body the gateway sent."""
    [request] = [r for r in fake.requests if r.path == "/v1/messages"]
    return request.json


def test_chat_with_a_system_prompt(client: openai.OpenAI, anthropic: FakeAnthropic) -> None:
    completion = client.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello from the SDK"}])
    assert completion.choices[0].message.content == "Echo: Hello from the SDK"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("msg_")
    assert completion.model == UPSTREAM_MODEL
    request = anthropic.requests[-1]
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers  # the client's gateway key stays here
    body = sent(anthropic)
    assert body["model"] == UPSTREAM_MODEL
    assert body["system"] == [{"type": "text", "text": "You are terse."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Hello from the SDK"}]}]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS  # none asked: the upstream's default
    assert "stream" not in body


def test_stream_arrives_token_by_token(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="claude", stream=True,
        messages=[{"role": "user", "content": "one two three four five"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces == ["Echo: ", "one ", "two ", "three ", "four ", "five"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices for c in chunks)  # the usage chunk was not asked for: cut out


def test_stream_usage_when_asked(client: openai.OpenAI, anthropic: FakeAnthropic) -> None:
    stream = client.chat.completions.create(
        model="claude", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count these four words"}])
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 5)
    assert sent(anthropic)["stream"] is True


def test_image_input(client: openai.OpenAI, anthropic: FakeAnthropic) -> None:
    completion = client.chat.completions.create(model="claude", messages=[{
        "role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert completion.choices[0].message.content == "Echo: What is this? [1 images]"
    blocks = sent(anthropic)["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": PNG}}


def test_tool_call_and_result_round_trip(client: openai.OpenAI,
                                         anthropic: FakeAnthropic) -> None:
    messages: list = [{"role": "user", "content": "use get_weather for Paris"}]
    first = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "use get_weather for Paris"}
    assert sent(anthropic)["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    anthropic.reset()
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}]
    second = client.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "Tool results: Sunny"
    turns = sent(anthropic)["messages"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": call.id, "name": "get_weather",
                                    "input": {"query": "use get_weather for Paris"}}]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": call.id,
                                    "content": "Sunny"}]


def test_streamed_tool_calls_come_in_fragments(client: openai.OpenAI,
                                               anthropic: FakeAnthropic) -> None:
    stream = client.chat.completions.create(
        model="claude", stream=True, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, messages=[{"role": "user", "content": "Paris please"}])
    chunks = list(stream)
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    fragments = [d.function.arguments for d in deltas[1:]]
    assert len(fragments) >= 2
    assert json.loads("".join(fragments)) == {"query": "Paris please"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert sent(anthropic)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_stop_sequence(client: openai.OpenAI, anthropic: FakeAnthropic) -> None:
    completion = client.chat.completions.create(
        model="claude", stop=["three"], messages=[{"role": "user", "content": "one two three"}])
    assert completion.choices[0].message.content == "Echo: one two "
    assert completion.choices[0].finish_reason == "stop"
    assert sent(anthropic)["stop_sequences"] == ["three"]


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_cuts_the_answer(client: openai.OpenAI, anthropic: FakeAnthropic,
                                    stream: bool) -> None:
    kwargs = {"model": "claude", "max_tokens": 3,
              "messages": [{"role": "user", "content": "a b c d e f"}]}
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        completion = client.chat.completions.create(**kwargs)
        text, finish = completion.choices[0].message.content, completion.choices[0].finish_reason
    assert (text, finish) == ("Echo: a b ", "length")
    assert sent(anthropic)["max_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_usage_with_cache_tokens_lands_in_the_ledger(client: openai.OpenAI, served: Served,
                                                     anthropic: FakeAnthropic,
                                                     stream: bool) -> None:
    anthropic.cache_next(created=100, read=900)
    request_id = new_request_id()
    answer = client.chat.completions.create(
        model="claude", stream=stream, messages=[{"role": "user", "content": "a b c"}],
        extra_headers={"x-request-id": request_id})
    if stream:
        list(answer)  # type: ignore[arg-type]
    else:
        assert answer.usage.prompt_tokens == 3 + 100 + 900  # type: ignore[union-attr]
        assert answer.usage.prompt_tokens_details.cached_tokens == 900  # type: ignore[union-attr]
    row = ledger_record(served.ledger, request_id)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (1003, 900)
    assert row["completion_tokens"] == 4  # "Echo: a b c"
    assert (row["model"], row["served_model"], row["backend"]) == \
        ("claude", UPSTREAM_MODEL, "anthropic")
    assert row["partial"] == 0
