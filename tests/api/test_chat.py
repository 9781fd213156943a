"""Chat completions through the gateway with the official SDK, sync and async, both modes."""

from __future__ import annotations

import openai
import pytest

from gateway_support import UPSTREAM_KEY, gateway_config

MESSAGES = [{"role": "user", "content": "hello there gateway"}]


def test_non_stream_answer_and_usage(client, fake):
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Echo: hello there gateway"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4
    assert fake.calls["POST /v1/chat/completions"] == 1


def test_gateway_key_replaces_client_key(client, fake):
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    seen = fake.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "sk-client-key" not in str(seen.headers)


def test_unknown_fields_pass_through_both_ways(client, fake):
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi", "x_note": {"deep": [1, 2]}}],
        extra_body={"vendor_knob": {"level": 3}, "metadata": {"a": "b"}},
        extra_headers={"x-custom-header": "kept"},
    )
    sent = fake.requests[-1]
    assert sent.json["vendor_knob"] == {"level": 3}
    assert sent.json["messages"][0]["x_note"] == {"deep": [1, 2]}
    assert sent.headers["x-custom-header"] == "kept"
    # Unknown response fields reach the client untouched.
    assert reply.model_extra["x_fake_extra"] == {"kept": True}
    assert reply.system_fingerprint == "fp_fake"


def test_body_bytes_are_forwarded_verbatim(gateway, fake):
    import httpx

    raw = b'{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"a b"}],"z":1.50}'
    r = httpx.post(f"{gateway.url}/chat/completions", content=raw,
                   headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert fake.requests[-1].body == raw


def test_alias_and_rename_reach_upstream_with_target_name(client, fake):
    client.chat.completions.create(model="gpt-3.5-turbo", messages=MESSAGES)
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"
    client.chat.completions.create(model="house-model", messages=MESSAGES)
    assert fake.requests[-1].json["model"] == "gpt-4o"
    # A wildcard route keeps the name the client asked for.
    reply = client.chat.completions.create(model="gpt-4.1-nano", messages=MESSAGES)
    assert fake.requests[-1].json["model"] == "gpt-4.1-nano"
    assert reply.model == "gpt-4.1-nano"


def test_stream_without_usage(client):
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there gateway"
    assert all(c.usage is None for c in chunks)
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and not finish[0].choices[0].delta.content


def test_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 4


def test_request_id_is_returned_and_forwarded(client, fake):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"
    assert raw.headers["x-lgw-backend"] == "openai"
    assert fake.requests[-1].headers["x-request-id"] == "trace-42"
    generated = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert generated.headers["x-request-id"].startswith("req_")


def test_unknown_model_is_404_model_not_found(client, fake):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="claude-9", messages=MESSAGES)
    assert err.value.body["code"] == "model_not_found"
    assert err.value.body["param"] == "model"
    assert fake.calls["POST /v1/chat/completions"] == 0


def test_default_backend_takes_unknown_models(make_gateway, fake):
    gw = make_gateway(gateway_config(fake.url, routing={"default_backend": "openai"}))
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="anything-goes", messages=MESSAGES)
    assert reply.model == "anything-goes"


async def test_async_client_both_modes(aclient):
    reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Echo: hello there gateway"
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    parts = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == (
        "Echo: hello there gateway"
    )
    assert parts[-1].usage.total_tokens > 0
