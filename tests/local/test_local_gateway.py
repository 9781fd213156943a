"""A gateway with two real SmolLM2 workers and the fake upstream, driven with the openai SDK."""

from __future__ import annotations

import re

import httpx

from local_support import LocalGateway, chat_body, wait_until


def test_chat_reaches_a_local_worker(pair: LocalGateway) -> None:
    client = pair.client()
    raw = client.chat.completions.with_raw_response.create(
        **chat_body("Say hello.", max_tokens=8))
    completion = raw.parse()
    assert raw.headers["x-lgw-backend"] == "smol"
    assert raw.headers["x-lgw-worker"] in ("0", "1")
    assert raw.headers["x-request-id"]
    assert completion.model == "smol"
    assert completion.choices[0].message.content
    assert 0 < completion.usage.completion_tokens <= 8


def test_chat_stream_reaches_a_local_worker(pair: LocalGateway) -> None:
    client = pair.client()
    raw = client.chat.completions.with_raw_response.create(
        **chat_body("Count to five.", max_tokens=12, stream=True))
    assert raw.headers["x-lgw-backend"] == "smol"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.model == "smol" for c in chunks)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_request_id_reaches_the_worker_and_comes_back(pair: LocalGateway) -> None:
    response = httpx.post(pair.url + "/chat/completions", json=chat_body("Hi.", max_tokens=2),
                          headers={"x-request-id": "req-local-1"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-local-1"
    # The worker's echo: the request id with the call's own id (its usage log's key).
    assert re.fullmatch(r"req-local-1\.[0-9a-f]{16}", response.headers["x-upstream-request-id"])


def test_gpt_models_still_go_to_the_upstream(pair: LocalGateway, fake) -> None:
    client = pair.client()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-lgw-backend"] == "openai"
    assert "x-lgw-worker" not in raw.headers
    assert raw.parse().model == "gpt-4o-mini"
    assert fake.calls["POST /v1/chat/completions"] == 1


def test_models_list_the_local_model(pair: LocalGateway) -> None:
    models = {m.id: m for m in pair.client().models.list()}
    assert "smol" in models
    assert models["smol"].owned_by == "local"
    assert pair.client().models.retrieve("smol").id == "smol"


def test_a_conversation_stays_on_one_worker(pair: LocalGateway) -> None:
    client = pair.client()
    seen = []
    history: list[str] = []
    for question in ["My name is Ada.", "What is my name?", "Spell it.", "Thanks."]:
        history.append(question)
        raw = client.chat.completions.with_raw_response.create(
            **chat_body(*history, max_tokens=6))
        seen.append(raw.headers["x-lgw-worker"])
        history.append(raw.parse().choices[0].message.content or "ok")
    assert len(set(seen)) == 1, seen


def test_different_conversations_spread_over_both_workers(pair: LocalGateway) -> None:
    client = pair.client()
    seen = set()
    for n in range(8):
        raw = client.chat.completions.with_raw_response.create(
            **chat_body(f"Conversation number {n}: hi.", max_tokens=2))
        seen.add(raw.headers["x-lgw-worker"])
    assert seen == {"0", "1"}


def test_worker_health_reports_its_model(pair: LocalGateway) -> None:
    for worker in pair.backend("smol").pool.workers:
        health = httpx.get(worker.url + "/health", timeout=5).json()
        assert health["status"] == "ok"
        assert health["max_queue"] == 4


def test_a_client_leaving_mid_stream_frees_its_worker(pair: LocalGateway) -> None:
    client = pair.client()
    raw = client.chat.completions.with_raw_response.create(
        **chat_body("Count from 1 to 500, separated by commas.", max_tokens=300, stream=True))
    worker = pair.backend("smol").pool.workers[int(raw.headers["x-lgw-worker"])]
    stream = raw.parse()
    next(iter(stream))
    assert worker.outstanding == 1
    stream.close()  # the client hangs up
    wait_until(lambda: worker.outstanding == 0, 5, "the gateway still counts the request")
    # The worker stopped generating for nobody.
    wait_until(lambda: httpx.get(worker.url + "/health", timeout=5).json()["active"] == 0, 5,
               "the worker is still generating")
