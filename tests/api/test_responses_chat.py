"""The Responses API on a backend that speaks only chat completions (issue 16, item 4).

The fake upstream, configured as `responses_api: false`, is the chat-only backend: it records
every chat request it gets, so the translation is checked on the wire, and its answers (echoes,
forced tool calls: llm_gateway/testing/fake_answer.py) come back through the official SDK.
The same fake under another name serves the Responses API natively.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
           "strict": False}


def config(fake_url: str) -> dict:
    upstream = {"base_url": fake_url, "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                "timeouts": {"connect": 2, "read": 5, "total": 10}, "retries": {"attempts": 0}}
    return {
        "upstreams": {"openai": upstream, "chatonly": {**upstream, "responses_api": False}},
        "models": [
            {"name": "chat-model", "backend": "chatonly"},
            # One deployment without the Responses API: the route's calls are all translated.
            {"name": "mixed", "deployments": [{"backend": "openai"}, {"backend": "chatonly"}]},
            # A fallback that may reach one: the same (a call cannot change API mid-way).
            {"name": "falls-back", "backend": "openai", "fallbacks": ["chat-model"]},
            {"name": "gpt-*", "backend": "openai"},
        ],
        "grouping": {"coalesce": "off", "cache": {"enabled": False}},
    }


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(parse_config(config(fake.url), env=ENV), env=ENV) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0)


def chat_sent(fake: FakeUpstream) -> list[dict]:
    """The chat bodies the fake received, in order; and nothing went to its /responses."""
    assert not any(r.path.startswith("/v1/responses") for r in fake.requests)
    return [r.json for r in fake.requests if r.path == "/v1/chat/completions"]


def test_create_is_a_chat_call_and_back(client, fake):
    created = client.responses.create(
        model="chat-model", input="hello world", instructions="Be terse.",
        max_output_tokens=50, temperature=0.5, metadata={"ticket": "42"})
    assert created.id.startswith("resp_") and created.object == "response"
    assert created.status == "completed" and created.output_text == "Echo: hello world"
    assert created.metadata == {"ticket": "42"} and created.instructions == "Be terse."
    message = created.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text"
    # The fake's count: 2 + 2 words, 3 a message; 3 words out.
    assert (created.usage.input_tokens, created.usage.output_tokens,
            created.usage.total_tokens) == (10, 3, 13)
    assert created.usage.input_tokens_details.cached_tokens == 0
    [sent] = chat_sent(fake)
    assert sent == {"model": "chat-model", "max_tokens": 50, "temperature": 0.5,
                    "messages": [{"role": "system", "content": "Be terse."},
                                 {"role": "user", "content": "hello world"}]}


def test_input_items_become_messages(client, fake):
    client.responses.create(model="chat-model", input=[
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is in this image?"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its colour?"}])
    [sent] = chat_sent(fake)
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png",
                                                "detail": "low"}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its colour?"}]


def test_stream_has_the_full_event_sequence(client, fake):
    events = list(client.responses.create(model="chat-model", input="a b c", stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 4,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    text = "".join(e.delta for e in deltas)
    final = events[-1].response
    assert text == "Echo: a b c" == final.output_text == events[8].text
    item = events[2].item
    assert {e.item_id for e in deltas} == {item.id} and item.status == "in_progress"
    assert events[0].response.id == final.id and events[0].response.status == "in_progress"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 6
    [sent] = chat_sent(fake)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_helper_of_the_sdk(client):
    with client.responses.stream(model="chat-model", input="x y z") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Echo: x y z" == final.output_text


def test_max_output_tokens_cuts_the_response_short(client):
    cut = client.responses.create(model="chat-model", input="one two three four five six",
                                  max_output_tokens=16)  # the fake answers 7 words
    assert cut.status == "completed"
    short = client.responses.create(model="chat-model", input=" ".join(["w"] * 20),
                                    max_output_tokens=16)
    assert short.status == "incomplete" and short.incomplete_details.reason == \
        "max_output_tokens"
    assert short.output[0].status == "incomplete"


def test_a_two_turn_conversation_is_rebuilt_from_the_store(client, fake):
    first = client.responses.create(model="chat-model", input="hello", instructions="Old.")
    second = client.responses.create(model="chat-model", input="and more",
                                     previous_response_id=first.id, instructions="New.")
    third = client.responses.create(model="chat-model", input="last",
                                    previous_response_id=second.id, stream=True)
    final = list(third)[-1].response
    assert second.previous_response_id == first.id and final.previous_response_id == second.id
    sent = chat_sent(fake)
    # Each turn's instructions only: OpenAI does not carry earlier ones over.
    assert sent[1]["messages"] == [
        {"role": "system", "content": "New."}, {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Echo: hello"}, {"role": "user", "content": "and more"}]
    assert sent[2]["messages"] == [*sent[1]["messages"][1:], {
        "role": "assistant", "content": "Echo: and more"}, {"role": "user", "content": "last"}]


def test_a_function_tool_is_called_and_its_output_sent_back(client, fake):
    called = client.responses.create(model="chat-model", input="weather in Paris?",
                                     tools=[WEATHER],
                                     tool_choice={"type": "function", "name": "get_weather"})
    [call] = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"text": "weather in Paris?"}' and call.call_id
    answered = client.responses.create(
        model="chat-model", previous_response_id=called.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answered.output_text == "Echo: weather in Paris?"  # the fake echoes the last user
    first, second = chat_sent(fake)
    assert first["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": WEATHER["parameters"], "strict": False}}]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert second["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": call.call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}]
    assert "tool_choice" not in second


def test_a_streamed_function_call(client):
    with client.responses.stream(model="chat-model", input="in Oslo", tools=[WEATHER],
                                 tool_choice="required") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress",
                         "response.output_item.added"]
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(deltas) == '{"text": "in Oslo"}'
    [call] = final.output
    assert call.type == "function_call" and call.arguments == "".join(deltas)
    assert events[2].item.call_id == call.call_id and events[-3].name == "get_weather"


def test_text_format_becomes_response_format(client, fake):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client.responses.create(model="chat-model", input="x", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    client.responses.create(model="chat-model", input="x",
                            text={"format": {"type": "json_object"}})
    first, second = chat_sent(fake)
    assert first["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}
    assert second["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_nowhere"}]}, "input[0].id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[0].image_url"),
    ({"input": []}, "input"),
])
def test_what_chat_cannot_do_is_a_400_naming_it(client, fake, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(**{"model": "chat-model", "input": "hi", **extra})
    assert err.value.body["param"] == param, err.value.body
    assert err.value.body["type"] == "invalid_request_error"
    assert fake.calls["POST /v1/chat/completions"] == 0


def test_stored_responses_are_read_listed_and_deleted(client, gateway):
    created = client.responses.create(model="chat-model", input=[
        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
        {"role": "user", "content": "three"}])
    again = client.responses.retrieve(created.id)
    assert again.output_text == created.output_text and again.id == created.id
    listed = client.responses.input_items.list(created.id)
    assert [i.content[0].text for i in listed.data] == ["three", "two", "one"]
    page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["one", "two"] and page.has_more
    rest = client.responses.input_items.list(created.id, order="asc", after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["three"] and not rest.has_more
    reply = httpx.get(f"{gateway.url}/responses/{created.id}?stream=true", timeout=5)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "stream"
    client.responses.delete(created.id)
    for read in (lambda: client.responses.retrieve(created.id),
                 lambda: client.responses.delete(created.id),
                 lambda: client.responses.input_items.list(created.id),
                 lambda: client.responses.create(model="chat-model", input="x",
                                                 previous_response_id=created.id)):
        with pytest.raises(openai.NotFoundError):
            read()


def test_store_false_is_not_kept(client):
    created = client.responses.create(model="chat-model", input="hi", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="chat-model", input="x", previous_response_id=created.id)
    assert err.value.body["param"] == "previous_response_id"


def test_a_route_that_may_reach_a_chat_only_backend_is_translated(client, fake):
    for _ in range(3):  # whichever deployment answers
        assert client.responses.create(model="mixed", input="hi").output_text == "Echo: hi"
    assert client.responses.create(model="falls-back", input="hi").output_text == "Echo: hi"
    assert len(chat_sent(fake)) == 4


def test_native_upstreams_are_still_relayed(client, fake):
    created = client.responses.create(model="gpt-4o-mini", input="hi")
    assert fake.calls["POST /v1/responses"] == 1 and created.output_text == "Echo: hi"
    # A gateway-kept conversation continues through chat, even on a native upstream.
    kept = client.responses.create(model="chat-model", input="hello")
    client.responses.create(model="gpt-4o-mini", input="on", previous_response_id=kept.id)
    assert fake.calls["POST /v1/responses"] == 1
    assert fake.requests[-1].json["messages"][-1] == {"role": "user", "content": "on"}


def test_a_cached_chat_answer_is_still_each_clients_own_response(make_gateway, fake):
    grouped = make_gateway({**config(fake.url), "grouping": {"cache": {"enabled": True}}})
    client = openai.OpenAI(base_url=grouped.url, api_key="sk-client", max_retries=0)
    ask = {"model": "chat-model", "input": "same question", "temperature": 0}
    first = client.responses.create(**ask)
    again = client.responses.with_raw_response.create(**ask)
    streamed = list(client.responses.create(**ask, stream=True))[-1].response
    assert again.headers["x-lgw-cache"] == "hit" and len(chat_sent(fake)) == 1
    second = again.parse()
    assert len({first.id, second.id, streamed.id}) == 3
    assert first.output_text == second.output_text == streamed.output_text
    assert client.responses.retrieve(second.id).output_text == first.output_text
