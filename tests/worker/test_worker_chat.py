"""/v1/chat/completions on a real worker, through the official openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from llama_cpp import llama_chat_format

from worker_support import user

EOS = {"2": -100}  # <|im_end|> banned: generation runs to max_tokens


def test_chat_non_stream_shape_and_model_echo(client):
    r = client.chat.completions.create(model="any-alias", messages=user("Say hi"),
                                       max_tokens=5)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == "any-alias"  # the name asked for, whatever the worker is called
    assert r.system_fingerprint == "lgw-local" and r.created > 0
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_max_tokens_gives_length_and_exact_count(client):
    for field in ("max_tokens", "max_completion_tokens"):
        r = client.chat.completions.create(model="m", messages=user("Tell me a story."),
                                           logit_bias=EOS, **{field: 7})
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == 7


def test_prompt_tokens_are_exact(client, vocab):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three colours, please."}]
    r = client.chat.completions.create(model="m", messages=messages, max_tokens=1)
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"], eos_token="<|im_end|>",
        bos_token="<|im_start|>")
    prompt = formatter(messages=messages).prompt
    assert r.usage.prompt_tokens == len(vocab.tokenize(prompt.encode(), add_bos=False,
                                                       special=True))


def test_stream_chunks_follow_openai(client):
    stream = client.chat.completions.create(model="m", messages=user("Tell me a story."),
                                            max_tokens=6, logit_bias=EOS, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    last = chunks[-1]
    assert last.choices[0].finish_reason == "length"
    assert last.choices[0].delta.content is None and last.choices[0].delta.role is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert "".join(c.choices[0].delta.content or "" for c in chunks)


def test_include_usage_adds_a_final_usage_chunk(client):
    stream = client.chat.completions.create(
        model="m", messages=user("Tell me a story."), max_tokens=5, logit_bias=EOS,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_ends_with_done(worker):
    body = {"model": "m", "messages": user("hi"), "max_tokens": 3, "stream": True}
    with httpx.stream("POST", worker.url + "/v1/chat/completions", json=body,
                      headers={"x-request-id": "req-abc.1"}, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-request-id"] == "req-abc.1"
        text = r.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    finish = json.loads(events[-2][len("data: "):])
    assert finish["choices"][0]["delta"] == {}


def test_stop_text_is_not_returned(client):
    messages = user("Count from one to twenty in words, separated by commas.")
    # A seed makes the output reproducible (greedy alone can flip with the cache state).
    same = {"temperature": 0, "seed": 3, "logit_bias": EOS, "max_tokens": 25}
    free = client.chat.completions.create(model="m", messages=messages, **same)
    text = free.choices[0].message.content
    stop = text[len(text) // 2:len(text) // 2 + 3]
    assert stop.strip(), text
    r = client.chat.completions.create(model="m", messages=messages, stop=[stop, "@@@"],
                                       **same)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[:text.index(stop)]
    streamed = client.chat.completions.create(model="m", messages=messages, stop=stop,
                                              stream=True, **same)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == text[:text.index(stop)]


def test_seed_determinism(client):
    messages = user("Write a short poem about the sea.")

    def run(**kw) -> str:
        return client.chat.completions.create(model="m", messages=messages, max_tokens=16,
                                              **kw).choices[0].message.content

    greedy = run(temperature=0, seed=1)
    first = run(temperature=0.8, seed=7)
    # Whatever ran in between (and whatever the context holds) does not matter.
    client.chat.completions.create(model="m", messages=user("Something else"), max_tokens=2)
    assert run(temperature=0, seed=1) == greedy
    assert run(temperature=0.8, seed=7) == first
    assert run(temperature=0.8, seed=8) != first


def test_cached_tokens_on_a_shared_prefix(client):
    system = {"role": "system", "content": "You are a helpful assistant. " * 40}
    first = client.chat.completions.create(
        model="m", messages=[system, *user("What is the sky's colour?")], max_tokens=1)
    second = client.chat.completions.create(
        model="m", messages=[system, *user("What is grass's colour?")], max_tokens=1)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 200, (first.usage, second.usage)
    assert cached < second.usage.prompt_tokens


def test_json_object_response_format(client):
    r = client.chat.completions.create(
        # (Worded so that this small model closes the object well within max_tokens, with
        # flash attention on or off: asked for a "value", it nests objects until cut off.)
        model="m", messages=user('Give a JSON object with the key "answer" set to "yes".'),
        response_format={"type": "json_object"}, max_tokens=60, temperature=0)
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_response_format(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="m", messages=user("Is water wet? Answer in JSON."), max_tokens=30,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    assert isinstance(json.loads(r.choices[0].message.content)["ok"], bool)


def test_logprobs(client):
    # Greedy: a sampled token may be part of a character (its bytes alone do not decode),
    # which made this test fail now and then.
    r = client.chat.completions.create(model="m", messages=user("Tell me a story."),
                                       max_tokens=4, logit_bias=EOS, logprobs=True,
                                       top_logprobs=3, temperature=0)
    entries = r.choices[0].logprobs.content
    assert len(entries) == 4
    assert "".join(e.token for e in entries) == r.choices[0].message.content
    for e in entries:
        assert e.logprob <= 0 and bytes(e.bytes).decode() == e.token
        assert len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.top_logprobs[-1].logprob
    plain = client.chat.completions.create(model="m", messages=user("hi"), max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_logprobs_streamed(client):
    stream = client.chat.completions.create(model="m", messages=user("Tell me a story."),
                                            max_tokens=4, logit_bias=EOS, logprobs=True,
                                            top_logprobs=2, stream=True)
    entries = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:  # each chunk: its own tokens
            content = chunk.choices[0].logprobs.content
            assert "".join(e.token for e in content) == chunk.choices[0].delta.content
            entries += content
    assert len(entries) == 4 and all(len(e.top_logprobs) == 2 for e in entries)


def test_n_beyond_the_engine_is_refused(client, engine):
    # simple: one choice per request; batching: up to --parallel (8) choices
    n, says = (2, "not supported") if engine == "simple" else (9, "at most 8")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=user("hi"), n=n)
    assert err.value.body["param"] == "n" and says in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="m", prompt="hi", n=n)
    assert err.value.body["param"] == "n" and says in err.value.body["message"]


def test_bad_tool_requests_are_400s_and_tool_choice_none_is_plain_chat(client):
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {}}}}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=user("time?"), tools=tools,
                                       tool_choice={"type": "function",
                                                    "function": {"name": "get_date"}})
    assert err.value.body["param"] == "tool_choice" and "get_date" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=user("time?"),
                                       tools=[{"type": "custom", "custom": {"name": "x"}}])
    assert err.value.body["code"] == "unsupported_value"
    assert err.value.body["param"] == "tools[0].type"
    # tool_choice "none" means no tools: answered without them.
    r = client.chat.completions.create(model="m", messages=user("hi"), tools=tools,
                                       tool_choice="none", max_tokens=2)
    assert r.choices[0].message.content is not None and not r.choices[0].message.tool_calls


def test_bad_bodies_are_openai_shaped_400s(worker):
    url = worker.url + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(url, json={"model": "m", "messages": user("hi"), "temperature": "hot"},
                   timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    r = httpx.post(url, json={"model": "m"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(url, json={"model": "m", "messages": user("hi"), "logit_bias": {"x": 1}},
                   timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]


def test_unknown_fields_are_ignored_and_every_sampler_runs(worker):
    r = httpx.post(worker.url + "/v1/chat/completions", timeout=30, json={
        "model": "m", "messages": user("hi"), "max_tokens": 2, "not_a_field": {"x": 1},
        "top_k": 20, "min_p": 0.05, "top_p": 0.9, "presence_penalty": 0.5,
        "frequency_penalty": 0.5, "repeat_penalty": 1.1})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] > 0


def test_content_parts_and_the_developer_role(client):
    parts = client.chat.completions.create(model="m", max_tokens=1, messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                     {"type": "text", "text": "there"}]}])
    plain = client.chat.completions.create(model="m", max_tokens=1, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", max_tokens=1, messages=[
            {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": "http://x/y.png"}}]}])
    assert err.value.body["param"] == "messages[0].content"
