"""Legacy completions and embeddings through the gateway."""

from __future__ import annotations

import base64
import struct

import httpx


def test_completion_non_stream(client):
    reply = client.completions.create(model="gpt-3.5-turbo", prompt="one two three")
    assert reply.choices[0].text == "Echo: one two three"
    assert reply.usage.completion_tokens == 4


def test_completion_stream(client, fake):
    stream = client.completions.create(model="gpt-4o-mini", prompt="alpha beta", stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert text == "Echo: alpha beta"
    assert fake.requests[-1].json["stream"] is True


async def test_completion_async(aclient):
    reply = await aclient.completions.create(model="gpt-4o-mini", prompt="x")
    assert reply.choices[0].text == "Echo: x"


def test_embeddings_float(client, fake):
    out = client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"],
                                   encoding_format="float")
    assert [d.index for d in out.data] == [0, 1]
    assert len(out.data[0].embedding) == 8
    assert out.usage.prompt_tokens == 3
    assert fake.requests[-1].json["input"] == ["a", "b c"]


def test_embeddings_base64_is_untouched(gateway):
    body = {"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64",
            "dimensions": 4}
    r = httpx.post(f"{gateway.url}/embeddings", json=body)
    assert r.status_code == 200
    encoded = r.json()["data"][0]["embedding"]
    values = struct.unpack("<4f", base64.b64decode(encoded))
    assert all(-1.0 <= v <= 1.0 for v in values)


async def test_embeddings_async_sdk_default_encoding(aclient):
    # The SDK asks for base64 by default and decodes it itself.
    out = await aclient.embeddings.create(model="text-embedding-3-small", input="hi")
    assert len(out.data[0].embedding) == 8
