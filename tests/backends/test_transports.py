"""Both upstream transports (aiohttp, httpx) behave the same behind the Backend seam."""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest

from conftest import gateway_config


@pytest.fixture(params=["aiohttp", "httpx"])
def gw(request, make_gateway, fake):
    config = gateway_config(fake.url)
    config["upstreams"]["openai"]["transport"] = request.param
    return make_gateway(config)


def test_chat_both_modes(gw, fake):
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
    msgs = [{"role": "user", "content": "same answer"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, stream=True) if c.choices)
    assert reply.choices[0].message.content == streamed == "Echo: same answer"


def test_retry_and_streamed_upload(gw, fake):
    fake.fail_next(500)
    r = httpx.post(gw.url + "/chat/completions",
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and fake.calls["POST /v1/chat/completions"] == 2
    chunks = [bytes([i]) * 50_000 for i in range(30)]
    r = httpx.post(gw.url + "/uploads/up_1/parts", content=iter(chunks))
    assert r.json()["sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_drop_mid_stream(gw, fake):
    fake.drop_next_stream(after_chunks=1)
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "a b c d"}]}
    text = httpx.post(gw.url + "/chat/completions", json=body).text
    assert '"error"' in text and "[DONE]" not in text
