"""Limits in a real Redis: shared by replicas, atomic, and what happens when Redis is down."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time

import pytest

from llm_gateway.config.access import BudgetConfig
from llm_gateway.errors import QuotaExceeded, RateLimited
from llm_gateway.limits import redis_store
from llm_gateway.metrics.registry import GatewayMetrics

from limits_support import Clock, SpendLedger, chat, gate, principal, unique
from services import free_port, redis_url


async def test_two_replicas_hold_one_rate_limit():
    url = redis_url()
    model = unique("gpt-rl")
    a = gate(redis=url, limits={"models": {"gpt-rl-*": {"rpm": 5}}})
    b = gate(redis=url, limits={"models": {"gpt-rl-*": {"rpm": 5}}})
    for g in (a, b):
        await g.start(None)
    results = await asyncio.gather(*((a, b)[i % 2].admit(principal(), chat(model))
                                     for i in range(20)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(results) - len(refused) == 5  # not 10: the replicas share the limit
    assert len(refused) == 15
    headers = refused[0].headers
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 11_000 < int(headers["retry-after-ms"]) <= 12_000  # one request's worth: 60/5 s
    await a.aclose()
    await b.aclose()


async def test_token_reservations_are_settled_in_redis():
    url = redis_url()
    a = gate(redis=url, limits={"key_default": {"tpm": 1000}})
    await a.start(None)
    who = principal()
    first = await a.admit(who, chat(max_tokens=499))  # 500
    assert dict(first.headers)["x-ratelimit-remaining-tokens"] == "500"
    first.settle(100, 0.0)
    await asyncio.wait(list(a.shared._tasks))
    second = await a.admit(who, chat(max_tokens=99))  # 100 settled + 100 reserved
    assert dict(second.headers)["x-ratelimit-remaining-tokens"] in ("800", "801")  # + refill
    with pytest.raises(RateLimited):
        await a.admit(who, chat(max_tokens=900))
    await a.aclose()


async def test_a_dead_replicas_reservation_is_given_back(monkeypatch):
    url = redis_url()
    a = gate(redis=url)
    b = gate(redis=url)
    await a.start(None)
    await b.start(None)
    who = principal(key_budget=BudgetConfig(tokens=100, period="total"))
    # Reservations older than RESERVATION_TTL are released by the next admission: here,
    # one that expires at once, and that replica a never settles (it "dies").
    monkeypatch.setattr(redis_store, "RESERVATION_TTL", -1.0)
    await a.admit(who, chat(max_tokens=99))
    monkeypatch.setattr(redis_store, "RESERVATION_TTL", 900.0)
    key = f"lgw:bu:k:{who.key_id}:total"
    assert int(await a.shared.client.hget(key, "rt")) == 100
    await a.shared.client.zadd(key + ":z", {"unknown": 0})  # expired, no amount: dropped
    admission = await b.admit(who, chat(max_tokens=9))  # a's 100 came back
    assert int(await b.shared.client.hget(key, "rt")) == 10
    admission.settle(10, 0.0)
    await asyncio.wait(list(b.shared._tasks))
    assert await b.shared.client.hget(key, "rt") == "0"
    assert await b.shared.client.zcard(key + ":z") == 0
    await a.aclose()
    await b.aclose()


async def test_replicas_seed_a_budget_once_from_the_ledger():
    url = redis_url()
    a, b = gate(redis=url), gate(redis=url)
    await a.start(SpendLedger(tokens=90))
    await b.start(SpendLedger(tokens=0))  # a replica whose ledger lags: the first seed wins
    who = principal(key_budget=BudgetConfig(tokens=100, period="month"))
    await a.admit(who, chat(max_tokens=9))
    with pytest.raises(QuotaExceeded):
        await b.admit(who, chat(max_tokens=9))
    await a.aclose()
    await b.aclose()


async def test_unreachable_redis_falls_back_to_per_replica_limits(caplog):
    metrics = GatewayMetrics()
    clock = Clock(100.0)
    g = gate(redis=f"redis://127.0.0.1:{free_port()}/0", metrics=metrics,
             clocks={"monotonic": clock}, limits={"key_default": {"rpm": 2}})
    with caplog.at_level(logging.WARNING, "llm_gateway.limits"):
        await g.start(None)
        who = principal()
        await g.admit(who, chat())  # served: counted in memory
        await g.admit(who, chat())
        with pytest.raises(RateLimited):  # and the limit still holds, per replica
            await g.admit(who, chat())
    degraded = "llm_gateway_limits_degraded_total"
    assert metrics.registry.get_sample_value(degraded) == 3
    warnings = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
    assert len(warnings) == 2  # at start, then once per 30 s, not once per call
    # Within a second of the failure Redis is not even tried (no connect timeout per call).
    assert g.shared._down_until > clock.now
    await g.aclose()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own, that it may stop and start again."""
    if shutil.which("redis-server") is None:
        redis_url()  # skips (or fails in CI) with the reason
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", str(tmp_path)]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop() -> None:
        procs[-1].terminate()
        procs[-1].wait(10)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


async def test_redis_stopping_and_coming_back(private_redis):
    url, start, stop = private_redis
    metrics = GatewayMetrics()
    clock = Clock(100.0)
    ledger = SpendLedger(tokens=40)
    g = gate(redis=url, metrics=metrics, clocks={"monotonic": clock})
    await g.start(ledger)
    who = principal(key_budget=BudgetConfig(tokens=100, period="day"))
    through_redis = await g.admit(who, chat(max_tokens=9))
    stop()
    through_redis.settle(10, 0.0)  # lost with Redis: no error, the ledger has the usage
    await asyncio.wait(list(g.shared._tasks))
    fallback = await g.admit(who, chat(max_tokens=9))  # served, counted in memory
    fallback.settle(10, 0.0)
    assert metrics.registry.get_sample_value("llm_gateway_limits_degraded_total") == 1
    start()  # an empty Redis: the budget is seeded from the ledger again
    clock.now += redis_store.RETRY_SECONDS
    ledger.tokens = 95
    await g.admit(who, chat(max_tokens=9))
    with pytest.raises(QuotaExceeded):
        await g.admit(who, chat(max_tokens=9))
    assert metrics.registry.get_sample_value("llm_gateway_limits_degraded_total") == 1
    await g.aclose()
