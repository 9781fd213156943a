"""Workers that die, and workers that are full: what the client sees, and how the pool heals."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import pytest

from llm_gateway.testing import FakeUpstream

from local_support import LocalGateway, alive, chat_body, healthy, wait_until

LONG = "Count from 1 to 500, separated by commas."


def test_worker_killed_mid_stream_ends_the_stream_cleanly_and_is_restarted(
    pair: LocalGateway,
) -> None:
    client = pair.client(timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        **chat_body(LONG, max_tokens=300, stream=True))
    worker = pair.backend("smol").pool.workers[int(raw.headers["x-lgw-worker"])]
    old_pid = worker.pid
    assert old_pid is not None
    chunks = iter(raw.parse())
    next(chunks)  # the stream has begun
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(openai.APIError) as info:
        for _ in chunks:
            pass
    assert time.monotonic() - killed_at < 5  # no hang
    assert "broke off the stream" in info.value.message
    assert info.value.code == "upstream_unavailable"

    # The next request is answered (by the other worker, or this one once restarted) ...
    reply = client.chat.completions.with_raw_response.create(**chat_body("Hi.", max_tokens=4))
    assert reply.status_code == 200 and reply.parse().choices[0].message.content is not None
    # ... and the supervisor brought the dead one back within seconds.
    wait_until(lambda: worker.healthy and worker.pid != old_pid, 20,
               f"worker not restarted: {worker.status}")
    assert worker.restarts >= 1
    assert not alive(old_pid)
    assert healthy(worker.url)


def test_worker_dead_before_first_byte_is_retried_on_another(
    external_workers, make_local_gateway
) -> None:
    first, second = external_workers(2)
    # Health checks rarely, so the gateway still believes in the first worker once it is gone.
    gateway = make_local_gateway({"ext": {
        "urls": [first.url, second.url], "health_interval_seconds": 60}})
    gateway.wait_ready("ext")
    client = gateway.client(timeout=30)
    # A conversation that lands on the first worker.
    for n in range(40):
        body = chat_body(f"Topic {n}: say yes.", max_tokens=2, model="ext")
        if client.chat.completions.with_raw_response.create(**body).headers["x-lgw-worker"] == "0":
            break
    else:
        pytest.fail("no conversation landed on worker 0")
    assert gateway.backend("ext").pool.workers[0].healthy

    first.proc.kill()
    first.proc.wait(5)
    raw = client.chat.completions.with_raw_response.create(**{**body, "stream": True})
    assert raw.headers["x-lgw-worker"] == "1"
    assert any(c.choices and c.choices[0].delta.content for c in raw.parse())
    assert not gateway.backend("ext").pool.workers[0].healthy


async def _stream(client: openai.AsyncOpenAI, model: str, n: int):
    """One streamed chat; its headers and text, or the error it got."""
    try:
        raw = await client.chat.completions.with_raw_response.create(
            **chat_body(f"Count to twenty ({n}).", max_tokens=24, stream=True, model=model))
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse()
                        if c.choices])
        return raw.headers, text
    except openai.APIStatusError as exc:
        return exc


async def test_queue_full_answers_429_or_spills_to_the_fallback(
    make_local_gateway, fake: FakeUpstream
) -> None:
    # One worker each, one request running and one waiting at most.
    gateway: LocalGateway = make_local_gateway({
        "tight": {"max_queue": 1, "parallel": 1},
        "spill": {"max_queue": 1, "parallel": 1, "fallback": "gpt-4o-mini"},
    })
    await asyncio.to_thread(gateway.wait_ready, "tight")
    await asyncio.to_thread(gateway.wait_ready, "spill")
    client = gateway.aclient()

    results = await asyncio.gather(*(_stream(client, "tight", n) for n in range(5)))
    limited = [r for r in results if isinstance(r, openai.APIStatusError)]
    served = [r for r in results if not isinstance(r, openai.APIStatusError)]
    assert limited and served, results
    for exc in limited:
        assert exc.status_code == 429
        assert exc.code == "queue_full"
        assert int(exc.response.headers["retry-after"]) >= 1
        assert exc.response.headers["x-lgw-backend"] == "tight"
    assert all(headers["x-lgw-backend"] == "tight" and text for headers, text in served)
    assert fake.calls["POST /v1/chat/completions"] == 0

    results = await asyncio.gather(*(_stream(client, "spill", n) for n in range(5)))
    assert not any(isinstance(r, openai.APIStatusError) for r in results), results
    backends = [headers["x-lgw-backend"] for headers, _ in results]
    assert "spill" in backends and "openai" in backends, backends
    spilled = backends.count("openai")
    assert fake.calls["POST /v1/chat/completions"] == spilled
    # The fallback got the request under the fallback's model name.
    assert {r.json["model"] for r in fake.requests} == {"gpt-4o-mini"}


def test_requests_wait_for_the_only_worker_to_load_or_restart(make_local_gateway) -> None:
    gateway: LocalGateway = make_local_gateway({"solo": {}})
    worker = gateway.backend("solo").pool.workers[0]
    client = gateway.client(timeout=30)
    body = chat_body("Hi.", max_tokens=2, model="solo")
    # Sent while the model is still loading: it waits rather than failing.
    assert not worker.healthy
    assert client.chat.completions.with_raw_response.create(**body).status_code == 200

    # Killed between two requests: the next one waits for the restart, within its deadline.
    old_pid = worker.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: not worker.healthy, 5)
    raw = client.chat.completions.with_raw_response.create(**body)
    assert raw.status_code == 200 and raw.headers["x-lgw-worker"] == "0"
    assert worker.pid != old_pid and worker.restarts == 1
