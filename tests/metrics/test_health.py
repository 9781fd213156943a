"""GET /healthz and GET /readyz."""

from __future__ import annotations

import httpx

from llm_gateway.backends.health import RecentFailures

from gateway_support import gateway_config

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_healthz_and_readyz(make_gateway):
    gw = make_gateway()
    alive = httpx.get(f"{gw.base}/healthz")
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    ready = httpx.get(f"{gw.base}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["config"] == "ok"
    assert body["checks"]["ledger"] == "ok"  # accounting is on by default (SQLite)
    assert body["checks"]["models"] == {name: "ok" for name in (
        "gpt-4o-mini", "house-model", "gpt-*", "text-embedding-*", "acme/house-llm")}
    assert httpx.post(f"{gw.base}/healthz").status_code == 405


def test_an_upstream_whose_recent_calls_all_failed_is_not_ready(fake, make_gateway):
    config = gateway_config(fake.url)
    config["upstreams"]["dead"] = {"base_url": DEAD + "/v1", "retries": {"attempts": 0},
                                   "list_models": False}
    config["models"].append({"name": "dead-model", "backend": "dead"})
    gw = make_gateway(config)
    body = {"model": "dead-model", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(5):
        assert httpx.post(f"{gw.url}/chat/completions", json=body).status_code == 502
    r = httpx.get(f"{gw.base}/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert r.json()["status"] == "not ready"
    assert checks["models"]["dead-model"] == "upstream 'dead': its last 5 calls failed"
    assert checks["models"]["gpt-4o-mini"] == "ok"


def test_a_local_backend_needs_a_healthy_worker_or_a_ready_fallback(fake, make_gateway):
    def config(fallback: str | None) -> dict:
        data = gateway_config(fake.url)
        data["local"] = {"smol": {"model": "default", "urls": [DEAD], "fallback": fallback,
                                  "health_interval_seconds": 0.2}}
        data["models"].append({"name": "smol", "backend": "smol"})
        return data

    alone = make_gateway(config(None))
    r = httpx.get(f"{alone.base}/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["models"]["smol"].startswith(
        "local backend 'smol' has no healthy worker")
    spilling = make_gateway(config("gpt-4o-mini"))
    assert httpx.get(f"{spilling.base}/readyz").status_code == 200


def test_recent_failures_expire():
    now = [100.0]
    health = RecentFailures(threshold=3, window=30.0, clock=lambda: now[0])
    for _ in range(2):
        health.failed()
    assert health.healthy  # two failures in a row are not yet "all recent calls"
    health.failed()
    assert not health.healthy
    now[0] += 31  # no call since: it may have recovered, and an unready gateway gets no calls
    assert health.healthy
    health.failed()
    assert not health.healthy
    health.succeeded()
    assert health.healthy

