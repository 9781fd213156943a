"""Embeddings from the embedded default (`llm-gateway serve` with no config: SmolLM2 served as
"smollm2" by a spawned worker), through the gateway with the openai SDK."""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from llm_gateway.accounting.record import TABLE
from llm_gateway.config import default_config
from llm_gateway.testing.gateway import GatewayServer
from llm_gateway.worker.models import default_model_path

from gateway_support import ENV
from local_support import LocalGateway, wait_until

MODEL = "smollm2"
N_EMBD = 576  # SmolLM2-135M's hidden size
CONTROL_TOKENS = {"0": -100, "1": -100, "2": -100}  # SmolLM2's: banned, a chat runs to the end


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    """The built-in configuration, as `llm-gateway serve` loads it without a file; only one
    thread per worker (a 2-core machine), the ledger in a temp dir, flushed quickly, and no
    request grouping: these tests repeat deterministic requests to see the worker answer
    each (grouping would answer repeats from its cache)."""
    env = {**ENV, "LLM_GATEWAY__STORAGE__DATA_DIR": str(tmp_path_factory.mktemp("default")),
           "LLM_GATEWAY__LOCAL__SMOLLM2__N_THREADS": "1",
           "LLM_GATEWAY__ACCOUNTING__FLUSH_SECONDS": "0.05",
           "LLM_GATEWAY__GROUPING__COALESCE": "off",
           "LLM_GATEWAY__GROUPING__CACHE__ENABLED": "false"}
    config = default_config(env)
    assert set(config.local) == {MODEL} and config.local[MODEL].embeddings  # nothing said
    gateway = LocalGateway(GatewayServer(config, env=env).start())
    try:
        gateway.wait_ready(MODEL)
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def vocab():
    """llama-cpp-python's tokenizer for the default model (vocabulary only)."""
    import llama_cpp

    return llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)


def floats(client: openai.OpenAI, inputs) -> list[np.ndarray]:
    out = client.embeddings.create(model=MODEL, input=inputs, encoding_format="float")
    return [np.array(d.embedding, dtype=np.float32) for d in out.data]


def test_the_default_config_serves_embeddings(default_gateway: LocalGateway) -> None:
    out = default_gateway.client().embeddings.create(model=MODEL, input="hello world",
                                                     encoding_format="float")
    assert out.object == "list" and out.model == MODEL and len(out.data) == 1
    vector = np.array(out.data[0].embedding)
    assert vector.shape == (N_EMBD,) and abs(np.linalg.norm(vector) - 1) < 1e-3
    assert out.usage.prompt_tokens == out.usage.total_tokens > 0


def test_base64_decodes_to_the_floats(default_gateway: LocalGateway) -> None:
    client = default_gateway.client()
    (plain,) = floats(client, "a cat sat on the mat")
    packed = client.embeddings.create(model=MODEL, input="a cat sat on the mat",
                                      encoding_format="base64").data[0].embedding
    assert isinstance(packed, str)
    assert np.allclose(np.frombuffer(base64.b64decode(packed), dtype="<f4"), plain, atol=1e-6)
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    sdk_default = client.embeddings.create(model=MODEL, input="a cat sat on the mat")
    assert np.allclose(np.array(sdk_default.data[0].embedding), plain, atol=1e-6)


def test_a_batch_of_three_comes_back_in_order(default_gateway: LocalGateway) -> None:
    client = default_gateway.client()
    texts = ["The sky is blue.", "Bread needs yeast. " * 20, "Cats sleep a lot."]
    batch = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    for item, text in zip(batch.data, texts, strict=True):
        assert np.array_equal(np.array(item.embedding, dtype=np.float32), floats(client, text)[0])
    assert batch.usage.prompt_tokens == sum(
        client.embeddings.create(model=MODEL, input=t).usage.prompt_tokens for t in texts)


def test_token_array_inputs(default_gateway: LocalGateway, vocab) -> None:
    client = default_gateway.client()
    texts = ["hello world", "a cat sat on the mat"]
    by_text = floats(client, texts)
    tokens = [vocab.tokenize(t.encode(), add_bos=True, special=False) for t in texts]
    (one,) = floats(client, tokens[0])  # a list of ints: one input
    assert np.array_equal(one, by_text[0])
    both = floats(client, tokens)  # a list of lists: one input each
    assert all(np.array_equal(a, b) for a, b in zip(both, by_text, strict=True))


def test_dimensions_other_than_the_models_are_a_400(default_gateway: LocalGateway) -> None:
    client = default_gateway.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input="text", dimensions=256)
    body = err.value.body
    assert set(body) == {"message", "type", "param", "code"}
    assert (body["type"], body["param"], body["code"]) == (
        "invalid_request_error", "dimensions", "unsupported_value")
    assert str(N_EMBD) in body["message"]
    same = client.embeddings.create(model=MODEL, input="text", dimensions=N_EMBD)
    assert len(same.data[0].embedding) == N_EMBD


def test_inputs_are_bounded(default_gateway: LocalGateway) -> None:
    client = default_gateway.client()
    with pytest.raises(openai.BadRequestError) as err:  # the limit: n_batch, 512 tokens
        client.embeddings.create(model=MODEL, input="word " * 600)
    assert (err.value.body["param"], err.value.body["code"]) == (
        "input", "context_length_exceeded")
    assert "512" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:  # OpenAI's bound: 2048 inputs
        client.embeddings.create(model=MODEL, input=["x"] * 2049)
    assert err.value.body["param"] == "input"


def test_the_ledger_counts_embedding_usage(default_gateway: LocalGateway) -> None:
    request_id = "req_" + uuid.uuid4().hex
    out = default_gateway.client().embeddings.create(
        model=MODEL, input=["count me", "and me"], extra_headers={"x-request-id": request_id})
    db = Path(default_gateway.server.config.storage.data_dir) / "gateway.db"
    rows: list[sqlite3.Row] = []

    def recorded() -> bool:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                rows[:] = conn.execute(f"SELECT * FROM {TABLE} WHERE request_id = ?",
                                       (request_id,)).fetchall()
        return bool(rows)

    wait_until(recorded, 15, "no ledger record of the embeddings call")
    (row,) = rows
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"]) == (
        MODEL, out.usage.prompt_tokens, 0)


def test_embeddings_false_is_a_clear_400(make_local_gateway) -> None:
    gateway = make_local_gateway({"no-emb": {"embeddings": False}})
    with pytest.raises(openai.BadRequestError) as err:  # the gateway says so: nothing is sent
        gateway.client().embeddings.create(model="no-emb", input="hello")
    body = err.value.body
    assert (body["param"], body["code"]) == ("model", "embeddings_unsupported")
    assert "embeddings: false" in body["message"]
    # ... and its worker was started without them.
    gateway.wait_ready("no-emb")
    worker = gateway.backend("no-emb").pool.workers[0]
    direct = httpx.post(worker.url + "/v1/embeddings", json={"model": "x", "input": "hello"},
                        timeout=30)
    assert direct.status_code == 400 and "--no-embeddings" in direct.json()["error"]["message"]
    assert gateway.client().chat.completions.create(
        model="no-emb", messages=[{"role": "user", "content": "Hi"}], max_tokens=2).choices


def test_a_chat_stream_goes_on_while_embeddings_run(default_gateway: LocalGateway) -> None:
    """Embeddings are answered while a chat streams, and the chat's answer is the one it gives
    alone. (Before embeddings had a context of their own, one waited for the running chats to
    end, and stopped new ones meanwhile.)"""
    client = default_gateway.client()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about rivers."}],
            "max_tokens": 160, "temperature": 0, "seed": 7, "logit_bias": CONTROL_TOKENS}

    def stream_text() -> tuple[str, float]:
        parts = []
        for chunk in client.chat.completions.create(**body, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                started.set()
        return "".join(parts), time.monotonic()

    started = threading.Event()
    alone, _ = stream_text()
    started.clear()
    answered: list[float] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def embed() -> None:
        started.wait(60)
        other = default_gateway.client()
        try:
            while not stop.is_set():
                out = other.embeddings.create(model=MODEL, input=["a river", "a lake"])
                assert len(out.data) == 2
                answered.append(time.monotonic())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=embed)
    thread.start()
    try:
        beside, ended = stream_text()
    finally:
        stop.set()
        thread.join(60)
    assert not failed
    assert beside == alone and len(alone) > 100
    assert answered and answered[0] < ended, "no embedding was answered while the chat streamed"
