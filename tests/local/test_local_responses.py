"""The Responses API on local models (issue 16, item 4), through the official SDK, against the
real worker and the bundled SmolLM2: answered through the worker's chat completions, the
conversation kept by the gateway.

Each answer is checked against the chat call it must have become: at temperature 0 the same
messages give the same text and the same prompt token count, so a two-turn conversation
whose second prompt counts exactly as the chat with both turns had the first turn in it.
(What the gateway sends is checked field by field against a recording fake in
tests/api/test_responses_chat.py.) Outputs are kept short: two cores run these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from llm_gateway.testing import FakeUpstream

from local_support import LocalGateway, start_gateway

WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string", "maxLength": 20}}, "required": ["city"]},
           "strict": True}
# A grammar the model must finish: the answer ends on its own, well under the token limit.
YES_NO = {"format": {"type": "json_schema", "name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
    "additionalProperties": False}}}


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[LocalGateway]:
    """`smol` with the model's own template; `smol-tools` with llama-cpp-python's
    function-calling format (a named tool choice is grammar-forced there)."""
    gateway = start_gateway(fake, {
        "smol": {"workers": 1},
        "smol-tools": {"workers": 1, "chat_format": "chatml-function-calling"}})
    try:
        gateway.wait_ready("smol")
        gateway.wait_ready("smol-tools")
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def client(gateway: LocalGateway) -> openai.OpenAI:
    return gateway.client()


def test_create_answers_as_the_chat_call_it_became(client):
    created = client.responses.create(model="smol", instructions="You are terse.",
                                      input="Name a colour.", max_output_tokens=16,
                                      temperature=0)
    assert created.id.startswith("resp_") and created.status in ("completed", "incomplete")
    assert created.output_text and created.output[0].type == "message"
    usage = created.usage
    assert 0 < usage.output_tokens <= 16 and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    chat = client.chat.completions.create(model="smol", max_tokens=16, temperature=0, messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."}])
    assert chat.choices[0].message.content == created.output_text
    assert chat.usage.prompt_tokens == usage.input_tokens


def test_stream_events_in_order_and_text_whole(client):
    with client.responses.stream(model="smol", input="Is the sky blue?", text=YES_NO,
                                 max_output_tokens=32, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == events[-4].text
    assert isinstance(json.loads(text)["ok"], bool)  # text.format reached the worker's grammar
    assert final.status == "completed" and final.usage.output_tokens > 0


def test_a_two_turn_conversation(client):
    first = client.responses.create(model="smol", input="My name is Ada.",
                                    max_output_tokens=16, temperature=0)
    second = client.responses.create(model="smol", input="What is my name?",
                                     previous_response_id=first.id, max_output_tokens=16,
                                     temperature=0, stream=True)
    final = list(second)[-1].response
    assert final.previous_response_id == first.id and final.output_text
    # The second prompt is the whole conversation: as many tokens as this chat's.
    chat = client.chat.completions.create(model="smol", max_tokens=16, temperature=0, messages=[
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"}])
    assert final.usage.input_tokens == chat.usage.prompt_tokens
    assert final.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert final.output_text == chat.choices[0].message.content


def test_a_function_tool_forced_by_grammar(client):
    called = client.responses.create(
        model="smol-tools", input="What's the weather in Paris?", tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=30,
        temperature=0)
    call = next(item for item in called.output if item.type == "function_call")
    assert call.name == "get_weather" and call.call_id
    assert isinstance(json.loads(call.arguments)["city"], str)
    with client.responses.stream(model="smol-tools", input="Weather in Rome?", tools=[WEATHER],
                                 tool_choice={"type": "function", "name": "get_weather"},
                                 max_output_tokens=30, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    streamed = next(item for item in final.output if item.type == "function_call")
    assert done.name == "get_weather" and done.arguments == streamed.arguments
    # The call's output goes back as the next turn.
    answered = client.responses.create(
        model="smol-tools", previous_response_id=called.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}],
        max_output_tokens=16, temperature=0, tool_choice="none")
    assert answered.status in ("completed", "incomplete") and answered.output_text
    assert answered.usage.input_tokens > called.usage.input_tokens


def test_stored_responses_read_list_delete_and_store_false(client):
    created = client.responses.create(model="smol", input="Hi.", max_output_tokens=16)
    assert client.responses.retrieve(created.id).output_text == created.output_text
    items = client.responses.input_items.list(created.id)
    assert [i.content[0].text for i in items.data] == ["Hi."]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    unstored = client.responses.create(model="smol", input="Hi.", max_output_tokens=16,
                                       store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
