"""The gate with its in-memory store: which limits apply, 429 shapes, headers, settling."""

from __future__ import annotations

import pytest

from llm_gateway.config.access import BudgetConfig, RateLimitConfig
from llm_gateway.errors import QuotaExceeded, RateLimited
from llm_gateway.limits.gate import NO_LIMITS
from llm_gateway.metrics.registry import GatewayMetrics

from limits_support import Clock, chat, gate, principal


async def test_no_limit_configured_costs_nothing():
    g = gate()
    await g.start(None)
    admission = await g.admit(principal(), chat())
    assert admission is NO_LIMITS and admission.headers == []
    admission.settle(10, 1.0)  # a no-op
    # A model limit for other models does not apply either.
    g = gate(limits={"models": {"gpt-4o": {"rpm": 1}}})
    assert await g.admit(principal(), chat("gpt-4o-mini")) is NO_LIMITS


async def test_model_limit_holds_across_callers_with_openai_headers():
    metrics = GatewayMetrics()
    g = gate(metrics=metrics, limits={"models": {"gpt-4o*": {"rpm": 2, "tpm": 1000}}})
    await g.start(None)
    first = await g.admit(principal(), chat("gpt-4o-mini", max_tokens=99))  # 1 + 99 tokens
    assert dict(first.headers) == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "30s", "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "6s"}
    await g.admit(principal(), chat("gpt-4o-mini"))  # another caller, same model
    assert await g.admit(principal(), chat("gpt-4o")) is not NO_LIMITS  # counted per model
    with pytest.raises(RateLimited) as caught:
        await g.admit(principal(), chat("gpt-4o-mini"))
    err = caught.value
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert "model gpt-4o-mini on requests per min (RPM): Limit 2" in err.message
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["retry-after"] == "30"
    assert int(err.headers["retry-after-ms"]) == pytest.approx(30_000, abs=100)
    assert metrics.registry.get_sample_value(
        "llm_gateway_ratelimited_total", {"team": "none", "limit": "rpm"}) == 1


async def test_token_limit_reserves_the_estimate_and_settles_to_the_real_count():
    clock = Clock(100.0)
    g = gate(limits={"key_default": {"tpm": 1000}, "default_max_tokens": 400})
    g.memory.windows.clock = clock
    who = principal()
    a = await g.admit(who, chat(max_tokens=None))  # 1 + 400 (default_max_tokens)
    b = await g.admit(who, chat(max_tokens=None))
    assert dict(b.headers)["x-ratelimit-remaining-tokens"] == "198"
    with pytest.raises(RateLimited) as caught:
        await g.admit(who, chat(max_tokens=None))
    assert "your key on tokens per min (TPM): Limit 1000, Requested 401" in caught.value.message
    a.settle(21, 0.0)  # a used 21 of its 401: the rest comes back
    a.settle(401, 0.0)  # settled once only
    c = await g.admit(who, chat(max_tokens=None))
    assert dict(c.headers)["x-ratelimit-remaining-tokens"] == "177"
    b.settle(0, 0.0)
    c.settle(0, 0.0)  # failed calls give everything back
    d = await g.admit(who, chat(max_tokens=None))
    assert dict(d.headers)["x-ratelimit-remaining-tokens"] == "578"


async def test_a_call_larger_than_the_token_limit_runs_when_the_limit_is_full():
    clock = Clock(100.0)
    g = gate(limits={"key_default": {"tpm": 100}})
    g.memory.windows.clock = clock
    who = principal()
    big = await g.admit(who, chat(max_tokens=5000))
    big.settle(300, 0.0)  # it really used 3 minutes' worth: later calls wait for it
    with pytest.raises(RateLimited) as caught:
        await g.admit(who, chat(max_tokens=1))
    # 300 tokens + 2 more, less the minute's 100: 202 tokens at 0.6 s each.
    assert caught.value.headers["retry-after-ms"] == "121200"
    clock.now += 121.2
    await g.admit(who, chat(max_tokens=1))


async def test_key_team_and_model_limits_all_apply_the_tightest_is_reported():
    g = gate(limits={"key_default": {"rpm": 100}, "models": {"gpt-4o-mini": {"rpm": 50}}})
    who = principal(team="research", team_limits=RateLimitConfig(rpm=3))
    first = await g.admit(who, chat())
    assert dict(first.headers)["x-ratelimit-limit-requests"] == "3"
    assert "x-ratelimit-limit-tokens" not in dict(first.headers)
    own = principal(key_limits=RateLimitConfig(rpm=1), team="research",
                    team_limits=RateLimitConfig(rpm=3))
    assert dict((await g.admit(own, chat())).headers)["x-ratelimit-remaining-requests"] == "0"
    await g.admit(who, chat())
    with pytest.raises(RateLimited) as caught:
        await g.admit(who, chat())  # the team's 3 are used, by two of its keys
    assert "team 'research'" in caught.value.message
    # The team's refusal took nothing from the model's limit: 50 - 3 left.
    other = await g.admit(principal(), chat())
    assert dict(other.headers)["x-ratelimit-remaining-requests"] == "46"


async def test_budget_refusal_shape():
    metrics = GatewayMetrics()
    g = gate(metrics=metrics)
    await g.start(None)
    who = principal(key_budget=BudgetConfig(tokens=0, period="day"))
    with pytest.raises(QuotaExceeded) as caught:
        await g.admit(who, chat())
    err = caught.value
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "insufficient_quota")
    assert err.headers == {"x-should-retry": "false"}
    assert "budget of this key is used up for today (UTC). It renews at " in err.message
    assert metrics.registry.get_sample_value(
        "llm_gateway_ratelimited_total", {"team": "none", "limit": "budget"}) == 1
    # An empty budget section is no budget.
    assert await g.admit(principal(key_budget=BudgetConfig()), chat()) is NO_LIMITS
