"""Tools through llama-cpp-python's function-calling handler (`--chat-format
chatml-function-calling`, the opt-in whole-run path; native tool calls are in
test_worker_toolcalls.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from worker_support import WorkerProcess, user

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}]
CHOICE = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def tool_worker() -> Iterator[WorkerProcess]:
    server = WorkerProcess("--chat-format", "chatml-function-calling").start()
    yield server
    server.stop()


def test_named_tool_choice_gives_a_tool_call(tool_worker):
    client = tool_worker.client()
    r = client.chat.completions.create(model="tools-model",
                                       messages=user("What's the weather in Paris?"),
                                       tools=TOOLS, tool_choice=CHOICE, max_tokens=30,
                                       temperature=0)
    choice = r.choices[0]
    assert r.model == "tools-model" and choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert r.usage.completion_tokens > 0

    stream = client.chat.completions.create(model="m", messages=user("Weather in Rome?"),
                                            tools=TOOLS, tool_choice=CHOICE, max_tokens=30,
                                            temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    calls = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0].choices[0].delta.tool_calls[0].function.name == "get_weather"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_plain_chat_still_works_with_the_tool_format(tool_worker):
    r = tool_worker.client().chat.completions.create(model="m", messages=user("Hello"),
                                                     max_tokens=3)
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
