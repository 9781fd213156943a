"""/v1/embeddings on a worker: on by default (a context of their own), off with
--no-embeddings; float and base64, batches, token arrays, dimensions, limits."""

from __future__ import annotations

import base64
import os
import threading

import httpx
import numpy as np
import openai
import pytest

from llm_gateway.worker.engines.embedder import NICE, _be_nicer

from worker_support import user


def vectors(response) -> list[np.ndarray]:
    return [np.array(d.embedding, dtype=np.float32) for d in response.data]


def test_float_embeddings(small_worker):
    client = small_worker.client()
    r = client.embeddings.create(model="emb", input=["hello world", "a cat sat"],
                                 encoding_format="float")
    assert r.object == "list" and r.model == "emb" and len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    a, b = vectors(r)
    assert a.shape == (576,) and abs(np.linalg.norm(a) - 1) < 1e-3
    assert not np.allclose(a, b)
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0


def test_base64_is_little_endian_float32(small_worker):
    client = small_worker.client()
    plain = client.embeddings.create(model="emb", input="hello world", encoding_format="float")
    packed = client.embeddings.create(model="emb", input="hello world",
                                      encoding_format="base64")
    raw = packed.data[0].embedding
    assert isinstance(raw, str)
    vector = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.allclose(vector, plain.data[0].embedding, atol=1e-6)


def test_a_batch_is_its_inputs_alone_in_order(small_worker):
    client = small_worker.client()
    texts = ["the same text", "word " * 100, "a dog"]  # the long one spans several chunks
    alone = [vectors(client.embeddings.create(model="emb", input=t, encoding_format="float"))[0]
             for t in texts]
    batch = client.embeddings.create(model="emb", input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    # Decoded one by one, in the same chunks: the very same numbers, neighbours or not.
    for mine, single in zip(vectors(batch), alone, strict=True):
        assert np.array_equal(mine, single)
    assert batch.usage.prompt_tokens == sum(
        client.embeddings.create(model="emb", input=t).usage.prompt_tokens for t in texts)


def test_token_arrays(small_worker, vocab):
    client = small_worker.client()
    texts = ["hello world", "a cat sat on the mat"]
    tokens = [vocab.tokenize(t.encode(), add_bos=True, special=False) for t in texts]
    by_text = vectors(client.embeddings.create(model="emb", input=texts,
                                               encoding_format="float"))
    one = client.embeddings.create(model="emb", input=tokens[0], encoding_format="float")
    assert np.array_equal(vectors(one)[0], by_text[0])
    assert one.usage.prompt_tokens == len(tokens[0])
    both = client.embeddings.create(model="emb", input=tokens, encoding_format="float")
    assert all(np.array_equal(a, b) for a, b in zip(vectors(both), by_text, strict=True))


def test_dimensions_only_the_models_own(small_worker):
    client = small_worker.client()
    full = client.embeddings.create(model="emb", input="text", dimensions=576)
    assert len(full.data[0].embedding) == 576
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="emb", input="text", dimensions=64)
    assert err.value.body["param"] == "dimensions"
    assert err.value.body["code"] == "unsupported_value"
    assert "576" in err.value.body["message"]


def test_bad_inputs_are_400s(small_worker):
    client = small_worker.client()
    cases = [
        ({"input": "word " * 400}, "context_length_exceeded"),  # the limit: n_ctx, 256 here
        ({"input": [[1, 2], [10**9]]}, "invalid_value"),  # not a token of this model
        ({"input": ""}, "invalid_value"),
    ]
    for body, code in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model="emb", **body)
        assert (err.value.body["param"], err.value.body["code"]) == ("input", code), body
    too_many = httpx.post(small_worker.url + "/v1/embeddings", timeout=30,
                          json={"model": "emb", "input": ["x"] * 2049})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "input"


def test_embedding_tokens_are_counted_in_metrics(small_worker):
    def prompt_tokens() -> float:
        text = httpx.get(small_worker.url + "/metrics", timeout=5).text
        line = next(x for x in text.splitlines()
                    if x.startswith("llm_worker_prompt_tokens_total "))
        return float(line.split()[1])

    before = prompt_tokens()
    used = small_worker.client().embeddings.create(model="emb", input="count these tokens")
    assert prompt_tokens() - before == used.usage.prompt_tokens


def test_embedding_worker_still_generates(small_worker):
    r = small_worker.client().chat.completions.create(model="m", messages=user("hi"),
                                                      max_tokens=3)
    assert r.usage.completion_tokens > 0


def test_embeddings_refused_when_turned_off(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="m", input="hello")
    assert "--no-embeddings" in err.value.body["message"]
    assert err.value.body["code"] == "embeddings_unsupported"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="per-thread nice is Linux's")
def test_the_embedding_thread_runs_nicer_than_the_process():
    seen = []

    def run() -> None:
        _be_nicer(NICE)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, own + NICE)]  # and this thread is as it was
