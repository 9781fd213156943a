"""OpenAI semantics of local models, seen through the gateway with the openai SDK."""

from __future__ import annotations

import base64
import struct

import openai
import pytest

from local_support import LocalGateway, chat_body


def test_completions_stream_and_not(pair: LocalGateway) -> None:
    client = pair.client()
    done = client.completions.create(model="smol", prompt="The capital of France is",
                                     max_tokens=6, temperature=0, seed=1)
    assert done.object == "text_completion" and done.choices[0].text
    assert done.usage.completion_tokens <= 6
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smol", prompt="The capital of France is", max_tokens=6, temperature=0, seed=1,
        stream=True) if c.choices)
    assert streamed == done.choices[0].text


def test_max_tokens_and_seed_determinism(pair: LocalGateway) -> None:
    client = pair.client()
    body = {**chat_body("Write a sentence about rivers.", max_tokens=7), "temperature": 0.9,
            "seed": 42}
    first = client.chat.completions.create(**body)
    second = client.chat.completions.create(**body)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage.completion_tokens == 7
    assert first.choices[0].finish_reason == "length"


def test_stop_text_is_not_returned(pair: LocalGateway) -> None:
    client = pair.client()
    body = {**chat_body("Count from 1 to 10 separated by commas.", max_tokens=40),
            "temperature": 0, "seed": 3}
    full = client.chat.completions.create(**body)
    text = full.choices[0].message.content
    assert "3" in text, text
    cut = client.chat.completions.create(**body, stop=["3"])
    assert "3" not in cut.choices[0].message.content
    assert text.startswith(cut.choices[0].message.content)
    assert cut.choices[0].finish_reason == "stop"


def test_include_usage_only_when_asked(pair: LocalGateway) -> None:
    client = pair.client()
    plain = list(client.chat.completions.create(**chat_body("Hi.", max_tokens=4, stream=True)))
    assert all(c.usage is None for c in plain)
    final = [c for c in plain if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and not final[0].choices[0].delta.content
    counted = list(client.chat.completions.create(
        **chat_body("Hi.", max_tokens=4, stream=True), stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage.completion_tokens > 0


def test_context_overflow_is_a_400_and_the_pool_goes_on(pair: LocalGateway) -> None:
    client = pair.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**chat_body("word " * 3000, max_tokens=4))
    assert err.value.body["code"] == "context_length_exceeded"
    assert client.chat.completions.create(**chat_body("Hi.", max_tokens=2)).choices


def test_a_local_entry_serves_embeddings_unasked(pair: LocalGateway) -> None:
    """`smol` says nothing of embeddings: they are on (the default config's own are tested in
    test_local_embeddings.py)."""
    client = pair.client()
    out = client.embeddings.create(model="smol", input=["a cat", "a dog"],
                                   encoding_format="float")
    assert [d.index for d in out.data] == [0, 1]
    size = len(out.data[0].embedding)
    assert size > 8 and out.usage.prompt_tokens > 0
    raw = pair.client().embeddings.with_raw_response.create(
        model="smol", input="a cat", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    vector = struct.unpack(f"<{size}f", base64.b64decode(encoded))
    assert vector == pytest.approx(out.data[0].embedding, abs=1e-5)
