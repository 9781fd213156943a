"""/v1/embeddings: float and base64 on a worker started with --embedding; refused otherwise."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from worker_support import user


def test_float_embeddings(small_worker):
    client = small_worker.client()
    r = client.embeddings.create(model="emb", input=["hello world", "a cat sat"])
    assert r.object == "list" and r.model == "emb" and len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    a, b = (np.array(d.embedding) for d in r.data)
    assert a.shape == (576,) and abs(np.linalg.norm(a) - 1) < 1e-3
    assert not np.allclose(a, b)
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0


def test_base64_is_little_endian_float32(small_worker):
    client = small_worker.client()
    plain = client.embeddings.create(model="emb", input="hello world")
    packed = client.embeddings.create(model="emb", input="hello world",
                                      encoding_format="base64")
    raw = packed.data[0].embedding
    assert isinstance(raw, str)
    vector = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.allclose(vector, plain.data[0].embedding, atol=1e-6)


def test_same_input_same_vector_and_dimensions(small_worker):
    client = small_worker.client()
    one = client.embeddings.create(model="emb", input="the same text").data[0].embedding
    batch = client.embeddings.create(model="emb", input=["other", "the same text"])
    assert np.allclose(one, batch.data[1].embedding, atol=1e-4)
    short = client.embeddings.create(model="emb", input="the same text", dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert abs(np.linalg.norm(short.data[0].embedding) - 1) < 1e-3


def test_embedding_worker_still_generates(small_worker):
    r = small_worker.client().chat.completions.create(model="m", messages=user("hi"),
                                                      max_tokens=3)
    assert r.usage.completion_tokens > 0


def test_embeddings_refused_without_the_flag(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="m", input="hello")
    assert "--embedding" in err.value.body["message"]


def test_too_long_input_is_refused(small_worker):
    with pytest.raises(openai.BadRequestError) as err:
        small_worker.client().embeddings.create(model="emb", input="word " * 400)
    assert err.value.body["code"] == "context_length_exceeded"
    assert err.value.body["param"] == "input"
