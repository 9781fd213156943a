"""The worker's HTTP layer against a scripted engine: loading state, errors, stream endings."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import orjson
import pytest
from starlette.testclient import TestClient

from llm_gateway.worker.config import WorkerConfig
from llm_gateway.worker.engines.base import (
    Engine,
    EngineStats,
    EventStream,
    Finished,
    Job,
    ModelInfo,
    Piece,
    QueueFull,
)
from llm_gateway.worker.server import create_app

TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


class _Events(EventStream):
    def __init__(self, items: list) -> None:
        self.items = list(items)

    async def __anext__(self):
        if not self.items:
            raise StopAsyncIteration
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        self.items = []


class ScriptedEngine(Engine):
    """Answers every job with `script`; `start` waits until the test lets it."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.script: list = []
        self.jobs: list[Job] = []
        self.full = False

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            n_ctx=64, n_vocab=1000, n_embd=4, max_embedding_tokens=64, embedding=False,
            metadata={"tokenizer.chat_template": TEMPLATE}, bos_token="", eos_token="</s>",
            bos_id=-1, tokenize=lambda text, special, parse: [7] * len(text.split()),
            detokenize=lambda tokens: b"x" * len(tokens))

    async def start(self) -> None:
        await asyncio.to_thread(self.loaded.wait)

    async def submit(self, job: Job) -> EventStream:
        if self.full:
            raise QueueFull("1 requests are already waiting")
        self.jobs.append(job)
        return _Events(self.script)

    def cancel(self, job_id: str) -> None:
        pass

    def stats(self) -> EngineStats:
        return EngineStats(0, 0, 1, 0, 0, None)

    async def embed(self, inputs: Sequence[Sequence[int]]):
        raise NotImplementedError

    async def close(self) -> None:
        self.loaded.set()


@pytest.fixture
def scripted():
    engine = ScriptedEngine()
    app = create_app(WorkerConfig(model="default", served_name="scripted", max_queue=1),
                     engine_factory=lambda config, path: engine)
    with TestClient(app) as http:
        yield engine, http


def _wait_ok(http: TestClient) -> None:
    deadline = time.monotonic() + 5
    while http.get("/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)


CHAT = {"model": "asked-name", "messages": [{"role": "user", "content": "one two three"}]}


def test_loading_then_ok(scripted):
    engine, http = scripted
    health = http.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "loading", "model": "scripted", "source": "default",
                             "queue_depth": 0, "active": 0, "max_queue": 1, "n_ctx": 4096,
                             "embeddings": True, "engine": "batching", "parallel": None,
                             "cached_sequences": 0, "kv_cache_usage": None,
                             "tokens_per_second": None}
    r = http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
    assert http.get("/v1/models").json()["data"][0]["id"] == "scripted"
    assert b"llm_worker_up 0.0" in http.get("/metrics").content
    engine.loaded.set()
    _wait_ok(http)
    assert http.get("/health").json()["n_ctx"] == 64
    assert b"llm_worker_up 1.0" in http.get("/metrics").content


def test_job_is_built_from_the_template_and_the_body(scripted):
    engine, http = scripted
    engine.loaded.set()
    _wait_ok(http)
    engine.script = [Piece("Hi", 5), Piece(" there", 6), Finished("stop", 4, 2, 1)]
    body = {**CHAT, "temperature": 0.5, "stop": "END", "max_tokens": 9, "seed": 3,
            "logit_bias": {"12": -5}}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Hi there"
    assert r.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
    job = engine.jobs[-1]
    # "<user>one two three\n<assistant>": four whitespace-separated "tokens"
    assert job.prompt == [7, 7, 7, 7] and job.max_tokens == 9 and job.seed == 3
    assert job.stop == ["END", "</s>"] and job.sampling.temperature == 0.5
    assert dict(job.sampling.logit_bias) == {12: -5.0}


def test_error_mid_stream_ends_without_done(scripted):
    engine, http = scripted
    engine.loaded.set()
    _wait_ok(http)
    engine.script = [Piece("Hi", 5), RuntimeError("decode failed")]
    r = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [e for e in r.text.split("\n\n") if e]
    assert "[DONE]" not in r.text
    last = orjson.loads(events[-1][len("data: "):])
    assert "decode failed" in last["error"]["message"]


def test_queue_full_and_unknown_paths(scripted):
    engine, http = scripted
    engine.loaded.set()
    _wait_ok(http)
    engine.full = True
    r = http.post("/v1/completions", json={"model": "m", "prompt": "a b"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "queue_full"
    r = http.get("/v1/nothing")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param",
                                                                 "code"}
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert r.headers["x-request-id"].startswith("req_")
