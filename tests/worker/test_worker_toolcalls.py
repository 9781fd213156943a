"""Native tool calls on a real worker: a forced call is an ordinary job (cancelled mid-run
on either engine), and a call the model writes on its own is found as it is written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from worker_support import WorkerProcess, user

OPEN_ENDED = [{"type": "function", "function": {
    "name": "write_story", "parameters": {"type": "object", "properties": {
        "story": {"type": "string"}}, "required": ["story"]}}}]
WEATHER_ARGS = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
WEATHER = [{"type": "function", "function": {"name": "get_weather",
                                             "parameters": WEATHER_ARGS}}]


def test_a_forced_call_is_cancelled_mid_run_like_any_job(worker):
    client = worker.client()
    stream = client.chat.completions.create(
        model="m", messages=user("Tell me a long story."), tools=OPEN_ENDED,
        tool_choice="required", max_tokens=400, temperature=0.8, seed=5, stream=True)
    fragments = 0
    try:
        for chunk in stream:
            calls = chunk.choices[0].delta.tool_calls if chunk.choices else None
            if calls and calls[0].function.arguments:
                fragments += 1
                if fragments == 3:
                    break
        assert fragments == 3 and worker.health()["active"] == 1
    finally:
        stream.close()
    # 400 tokens would take seconds more; the sequence is ended at once instead.
    assert worker.wait_idle(within=1.5) < 1.5


@pytest.fixture(scope="module")
def llama3_worker() -> Iterator[WorkerProcess]:
    server = WorkerProcess("--tool-format", "llama3").start()
    yield server
    server.stop()


def test_a_call_the_model_writes_unforced_is_parsed_as_it_comes(llama3_worker):
    # tool_choice auto: nothing forces a call, but a response_format grammar makes the model
    # write exactly what a Llama 3.1 model writes for one, which the parser must recognise.
    schema = {"type": "object", "properties": {"name": {"const": "get_weather"},
                                               "parameters": WEATHER_ARGS},
              "required": ["name", "parameters"]}
    body = {"model": "m", "messages": user("Weather in Oslo?"), "tools": WEATHER,
            "max_tokens": 40, "temperature": 0,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "call", "schema": schema}}}
    client = llama3_worker.client()
    chunks = list(client.chat.completions.create(**body, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas)  # the call's text is not content
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function.name == "get_weather" and calls[0].id
    assert json.loads("".join(c.function.arguments or "" for c in calls))["city"]
    assert deltas[-1].tool_calls is None and chunks[-1].choices[0].finish_reason == "tool_calls"

    whole = client.chat.completions.create(**body)
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [c.function.name for c in message.tool_calls] == ["get_weather"]
    # Without tools the same text is plain content.
    plain = client.chat.completions.create(**{k: v for k, v in body.items() if k != "tools"})
    assert json.loads(plain.choices[0].message.content)["name"] == "get_weather"
