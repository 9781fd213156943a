"""The whole API on the embedded default, as a new user meets it (issue 16): `llm-gateway serve`
run as a process with no configuration file and no OpenAI key, then one openai-SDK session
over every endpoint a drop-in `OPENAI_BASE_URL` is expected to serve: models, chat and legacy
completions (whole and streamed), embeddings (float, base64, a batch), n > 1, a tool call
streamed in fragments, and the Responses API (create, stream, a two-turn conversation, read
and delete). Each part has its own detailed tests in this folder; this one checks they all
hold together on the default configuration, with nothing tuned."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from services import free_port

MODEL = "smollm2"
N_EMBD = 576  # SmolLM2-135M's hidden size
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """`llm-gateway serve` in an empty directory (its data dir lands there), with no
    LLM_GATEWAY__* override and no OPENAI_API_KEY: exactly the README's second command."""
    home = tmp_path_factory.mktemp("newuser")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLM_GATEWAY__") and k != "OPENAI_API_KEY"}
    env["HOME"] = str(home)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--port", str(port)],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # ready when the worker answers, not only when the gateway listens
            try:
                r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
                    "model": MODEL, "max_tokens": 1,
                    "messages": [{"role": "user", "content": "Hi"}]})
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.stdout.read().decode()[-4000:])
            time.sleep(0.5)
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="anything", timeout=120,
                            max_retries=0)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_models_lists_the_default(client: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in client.models.list().data]


def test_chat_and_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8)
    assert whole.choices[0].message.content and whole.usage.completion_tokens <= 8
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=8, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage.completion_tokens >= 1
    legacy = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=6)
    assert legacy.choices[0].text and legacy.usage.prompt_tokens > 0
    pieces = list(client.completions.create(model=MODEL, prompt="The sky is", max_tokens=6,
                                            stream=True))
    assert len(pieces) > 1 and "".join(p.choices[0].text for p in pieces if p.choices)


def test_embeddings_float_base64_and_a_batch(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=MODEL, input=["a red fox", "a blue sea", "tax law"])
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(len(d.embedding) == N_EMBD for d in floats.data) and floats.usage.prompt_tokens
    raw = httpx.post(f"{client.base_url}embeddings", timeout=60, json={
        "model": MODEL, "input": "a red fox", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats.data[0].embedding, atol=1e-6)


def test_two_choices_share_one_prompt(client: openai.OpenAI) -> None:
    two = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, n=2,
                                         temperature=1.0, seed=5)
    assert [c.index for c in two.choices] == [0, 1]
    one = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4,
                                         temperature=1.0, seed=5)
    assert two.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once


def test_a_forced_tool_call_streams_its_arguments(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=60, temperature=0, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks
              if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].function.name == "get_weather" and len(deltas) >= 3
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas))
    assert isinstance(arguments["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_the_responses_api_with_a_stored_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, instructions="You are terse.",
                                    input="My name is Ada.", max_output_tokens=16, temperature=0)
    assert first.id.startswith("resp_") and first.output_text
    with client.responses.stream(model=MODEL, previous_response_id=first.id,
                                 input="What is my name?", max_output_tokens=16,
                                 temperature=0) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    # A small model may run into max_output_tokens: OpenAI then ends on response.incomplete
    # (which the SDK's get_final_response does not accept), so the last event's response.
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed",
                                                            "response.incomplete")
    second = events[-1].response
    assert "response.output_text.delta" in kinds
    # The second prompt holds the first turn: more input than the first turn's in and out.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_the_responses_api_with_a_function_tool(client: openai.OpenAI) -> None:
    tool = {"type": "function", **WEATHER["function"], "strict": True}
    with client.responses.stream(model=MODEL, input="Weather in Rome?", tools=[tool],
                                 tool_choice={"type": "function", "name": "get_weather"},
                                 max_output_tokens=60, temperature=0) as stream:
        events = list(stream)
    assert "response.function_call_arguments.delta" in [e.type for e in events]
    call = next(item for item in events[-1].response.output if item.type == "function_call")
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    answered = client.responses.create(
        model=MODEL, tools=[tool], tool_choice="none", max_output_tokens=16, temperature=0,
        input=[{"type": "message", "role": "user", "content": "Weather in Rome?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}])
    assert answered.output_text and answered.usage.input_tokens > 0
