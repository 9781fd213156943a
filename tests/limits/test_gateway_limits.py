"""Rate limits and budgets through a real gateway, seen with the openai SDK."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

from llm_gateway.accounting.record import TABLE
from llm_gateway.config.access import BudgetConfig, RateLimitConfig
from llm_gateway.principal import Principal

ASK = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}


def sdk(gw, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="sk-client", max_retries=retries)


def as_caller(gw, who: Principal) -> list[str]:
    """Stands in for keys mode: every request is made by `who`. Returns the paths asked."""
    asked: list[str] = []

    async def authenticate(scope: dict) -> Principal:
        asked.append(scope["path"])
        return who

    gw.app.state.auth.authenticate = authenticate
    return asked


def ledger_tokens(data_dir: Path, team: str) -> tuple[int, int]:
    """(records, tokens charged) for a team in the gateway's SQLite ledger."""
    with sqlite3.connect(data_dir / "gateway.db") as conn:
        n, tokens = conn.execute(
            f"SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM {TABLE}"
            " WHERE team = ? AND charged = 1", (team,)).fetchone()
    return n, tokens


def test_every_answer_carries_the_tightest_limits_and_the_429_has_retry_after(fake,
                                                                              make_gateway):
    gw = make_gateway(limits={"models": {"gpt-4o-mini": {"rpm": 2, "tpm": 10000}},
                              "key_default": {"rpm": 50}})
    client = sdk(gw)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", **ASK)
    assert raw.parse().choices[0].message.content == "Echo: hello"
    h = raw.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"],
            h["x-ratelimit-reset-requests"]) == ("2", "1", "30s")
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == (
        "10000", "9978")  # 2 prompt tokens (8 characters) + 20 allowed reserved
    with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", stream=True, **ASK) as stream:
        assert stream.headers["x-ratelimit-remaining-requests"] == "0"
        assert "".join(stream.iter_text()).rstrip().endswith("[DONE]")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", **ASK)
    err = caught.value
    assert err.status_code == 429
    assert err.body["code"] == "rate_limit_exceeded" and err.body["type"] == "rate_limit_exceeded"
    assert "model gpt-4o-mini on requests per min (RPM): Limit 2" in err.body["message"]
    assert err.response.headers["retry-after"] == "30"
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert fake.calls["POST /v1/chat/completions"] == 2  # the refused call never went up
    # Another model is not limited by gpt-4o-mini's limit, only by the key's default.
    other = client.chat.completions.with_raw_response.create(model="gpt-4o", **ASK)
    assert other.headers["x-ratelimit-limit-requests"] == "50"
    assert "x-ratelimit-limit-tokens" not in other.headers


def test_no_limits_no_headers(make_gateway):
    gw = make_gateway()
    raw = sdk(gw).chat.completions.with_raw_response.create(model="gpt-4o-mini", **ASK)
    assert not [k for k in raw.headers if k.startswith("x-ratelimit")]


def test_an_exhausted_budget_is_insufficient_quota_and_the_sdk_does_not_retry(fake,
                                                                              make_gateway):
    gw = make_gateway()
    asked = as_caller(gw, Principal(key_id="key_x", team="research",
                                    team_budget=BudgetConfig(tokens=0, period="month")))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gw, retries=2).chat.completions.create(model="gpt-4o-mini", **ASK)
    err = caught.value
    assert err.status_code == 429
    assert err.body["code"] == "insufficient_quota" and err.body["type"] == "insufficient_quota"
    assert "team 'research' is used up for this month (UTC)" in err.body["message"]
    assert len(asked) == 1  # x-should-retry: false, so the SDK's 2 retries were not spent
    assert fake.calls["POST /v1/chat/completions"] == 0
    r = httpx.post(f"{gw.url}/chat/completions", json={"model": "gpt-4o-mini", **ASK})
    assert r.status_code == 429 and r.json()["error"]["param"] is None


def test_redis_down_the_gateway_serves_and_limits_per_replica(make_gateway):
    from services import free_port

    gw = make_gateway(storage={"redis_url": f"redis://127.0.0.1:{free_port()}/0"},
                      limits={"models": {"gpt-4o-mini": {"rpm": 2}}})
    client = sdk(gw)
    for _ in range(2):
        assert client.chat.completions.create(model="gpt-4o-mini", **ASK).choices
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", **ASK)


def test_real_usage_settles_the_token_limit(fake, make_gateway):
    gw = make_gateway(limits={"key_default": {"tpm": 600}})  # 10 tokens back a second
    client = sdk(gw)
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", **ASK)
    assert first.headers["x-ratelimit-remaining-tokens"] == str(600 - 22)
    used = first.parse().usage.total_tokens
    assert used < 22
    second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", **ASK)
    # The first call's unused reservation came back: only what it really used counts
    # (plus what flowed back since, 10 tokens a second).
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert 600 - used - 22 <= remaining <= 600 - used - 22 + 50


def test_a_burst_against_a_nearly_spent_budget_in_the_ledger(fake, make_gateway, tmp_path):
    sections = {"storage": {"url": f"sqlite:///{tmp_path}/gateway.db"},
                "accounting": {"flush_seconds": 0.05}}
    team = "burst-team"
    gw = make_gateway(**sections)
    as_caller(gw, Principal(key_id="key_a", team=team))
    client = sdk(gw)
    for _ in range(5):
        client.chat.completions.create(model="gpt-4o-mini", **ASK)
    gw.stop()  # the ledger is flushed at shutdown
    records, spent = ledger_tokens(tmp_path, team)
    assert records == 5
    # A new gateway reads the spend so far from the ledger; room for about one more call.
    budget = spent + 30
    gw = make_gateway(**sections)
    as_caller(gw, Principal(key_id="key_b", team=team, team_limits=RateLimitConfig(rpm=1000),
                            team_budget=BudgetConfig(tokens=budget, period="month")))

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            return await asyncio.gather(*(
                http.post("/chat/completions", json={"model": "gpt-4o-mini", **ASK})
                for _ in range(50)))

    statuses = [r.status_code for r in asyncio.run(burst())]
    admitted = statuses.count(200)
    assert admitted >= 1 and statuses.count(429) == 50 - admitted
    gw.stop()
    records, total = ledger_tokens(tmp_path, team)
    assert records == 5 + admitted
    reservation = 2 + 20  # "hello" (2 tokens at 4 characters each) + max_tokens
    assert total - budget <= reservation  # overshoot: at most one reservation
