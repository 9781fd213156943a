"""Budgets: reserve-then-settle against concurrent bursts, periods, seeding from the ledger.

Each test runs against the in-memory store and against a real Redis shared by two gates (two
replicas).
"""

from __future__ import annotations

import asyncio
import calendar

import pytest

from llm_gateway.config.access import BudgetConfig
from llm_gateway.errors import QuotaExceeded
from llm_gateway.limits.budgets import RESEED_SECONDS, period_bounds
from llm_gateway.metrics.registry import GatewayMetrics

from limits_support import Clock, SpendLedger, chat, gate, principal, unique
from services import redis_url

PRICES = {"prices": {"gpt-4o-mini": {"input": 1000, "output": 2000}}}  # USD per 1M


@pytest.fixture(params=["memory", "redis"])
def replicas(request):
    """Two gates as two replicas: the same Redis, or (memory) the same gate twice."""
    async def make(ledger, **kwargs):
        url = redis_url() if request.param == "redis" else None
        first = gate(redis=url, accounting=PRICES, **kwargs)
        second = gate(redis=url, accounting=PRICES, **kwargs) if url else first
        for g in {first, second}:
            await g.start(ledger)
        return first, second

    return make


async def close(*gates):
    for g in set(gates):
        await g.aclose()


async def burst(gates, who, n, **call):
    """n concurrent admissions spread over the gates: the admitted ones, and refusals."""
    results = await asyncio.gather(
        *(gates[i % len(gates)].admit(who, chat(**call)) for i in range(n)),
        return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded):
            raise r
    return [r for r in results if not isinstance(r, BaseException)]


async def test_a_burst_against_a_nearly_spent_budget_overshoots_by_one_reservation(replicas):
    ledger = SpendLedger(tokens=900)
    a, b = await replicas(ledger)
    team = unique("team")
    who = principal(team=team, team_budget=BudgetConfig(tokens=1000, period="month"))
    # Each call reserves 1 prompt token + 50 completion tokens = 51.
    admitted = await burst([a, b], who, 50)
    # 900 < 1000 admits one (now 951 with its reservation), 951 < 1000 a second, then no more.
    assert len(admitted) == 2
    assert sum(1 for q in ledger.asked if q["team"] == team) <= 2  # seeded once per replica
    month, start, _ = period_bounds("month", ledger_time())
    assert ledger.asked[0] == {"key_id": None, "team": team, "since": start}
    for admission in admitted:
        admission.settle(51, 0.0)  # each used everything it reserved
    await settled(a, b)
    spent = await spent_tokens(a, f"t:{team}:{month}")
    assert spent == 900 + 51 * 2
    assert spent - 1000 <= 51  # the overshoot: at most one reservation
    with pytest.raises(QuotaExceeded):
        await b.admit(who, chat())
    await close(a, b)


def ledger_time() -> float:
    import time

    return time.time()


async def spent_tokens(g, key: str) -> int:
    """Settled tokens as the budget store holds them (the ledger would have the same)."""
    if g.shared is not None:
        return int(await g.shared.client.hget(f"lgw:bu:{key}", "st"))
    scope = key.rsplit(":", 1)[0]
    return g.memory.budgets._tallies[scope].spent_tokens


async def test_settling_frees_the_reservation_and_adds_real_usage(replicas):
    metrics = GatewayMetrics()
    a, b = await replicas(SpendLedger(tokens=0), metrics=metrics)
    team = unique("team")
    who = principal(team=team, team_budget=BudgetConfig(tokens=100, period="day"))
    first = await a.admit(who, chat(max_tokens=99))  # 1 + 99 reserved: the whole budget
    with pytest.raises(QuotaExceeded):
        await b.admit(who, chat(max_tokens=9))
    first.settle(0, 0.0)  # a failed call: its reservation comes back, nothing spent
    await settled(a, b)
    second = await b.admit(who, chat(max_tokens=9))
    second.settle(30, 0.0)  # it used more than reserved: the real count is what counts
    await settled(a, b)
    third = await a.admit(who, chat(max_tokens=68))  # 30 spent + 69 reserved = 99 < 100
    fourth = await b.admit(who, chat(max_tokens=1))  # so one more: 101
    with pytest.raises(QuotaExceeded):
        await a.admit(who, chat(max_tokens=1))
    third.settle(69, 0.0)
    await settled(a, b)
    fourth.settle(2, 0.0)
    await settled(a, b)
    # The team's gauge says what is left (a team not in the config is labelled "other").
    assert metrics.registry.get_sample_value(
        "llm_gateway_budget_remaining", {"team": "other", "unit": "tokens"}) == -1.0
    await close(a, b)


async def settled(*gates) -> None:
    """Wait for background settles (Redis) to land."""
    for g in set(gates):
        if g.shared is not None and g.shared._tasks:
            await asyncio.wait(list(g.shared._tasks))


async def test_cost_budget_uses_the_price_table(replicas):
    a, b = await replicas(SpendLedger(tokens=10**9, cost=0.5))
    who = principal(key_budget=BudgetConfig(cost=0.7, period="total"))
    # 1 prompt token at $1000/1M + 99 completion at $2000/1M = $0.199 reserved per call.
    admitted = await burst([a, b], who, 10, max_tokens=99)
    assert len(admitted) == 2  # 0.5 -> 0.699 -> 0.898: then refused
    for admission in admitted:
        admission.settle(100, 0.05)
    await settled(a, b)
    more = await burst([a, b], who, 10, max_tokens=99)
    assert len(more) == 1  # 0.6 spent: one more reservation, then no more
    await close(a, b)


async def test_a_new_period_starts_from_the_ledgers_count(replicas):
    may31 = calendar.timegm((2030, 5, 31, 23, 59, 0))
    wall = Clock(float(may31))
    ledger = SpendLedger(tokens=95)
    a, b = await replicas(ledger, clocks={"wall": wall})
    who = principal(key_budget=BudgetConfig(tokens=100, period="day"))
    admitted = await burst([a, b], who, 5, max_tokens=9)
    assert len(admitted) == 1
    wall.now += 120  # June 1st: a new day
    ledger.tokens = 0
    admitted = await burst([a, b], who, 20, max_tokens=9)
    assert len(admitted) == 10
    assert ledger.asked[-1]["since"] == calendar.timegm((2030, 6, 1, 0, 0, 0))
    assert ledger.asked[-1]["key_id"] == who.key_id
    await close(a, b)


async def test_a_ledger_that_does_not_answer_counts_from_zero_then_is_asked_again(replicas):
    wall = Clock(ledger_time())
    ledger = SpendLedger(tokens=1000)
    ledger.down = True
    a, b = await replicas(ledger, clocks={"wall": wall})
    who = principal(key_budget=BudgetConfig(tokens=1000, period="month"))
    admission = await a.admit(who, chat())  # served: the budget counts from 0 meanwhile
    admission.settle(5, 0.0)
    await settled(a, b)
    ledger.down = False
    if a.shared is None:
        wall.now += RESEED_SECONDS  # the next admission asks the ledger again
    else:
        # In Redis the provisional count expires, and the next admission seeds it again.
        key = f"lgw:bu:k:{who.key_id}:{period_bounds('month', wall.now)[0]}"
        assert 0 < await a.shared.client.ttl(key) <= 30
        await a.shared.client.delete(key)
    with pytest.raises(QuotaExceeded):
        await b.admit(who, chat())
    await close(a, b)
