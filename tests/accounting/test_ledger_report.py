"""usage_report and prices, against real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.prices import Prices
from llm_gateway.accounting.report import UsageQuery, usage_report
from llm_gateway.config.accounting import PriceConfig
from llm_gateway.storage.database import Database
from llm_gateway.usage import Usage

from ledger_support import make_record
from services import open_test_database

DAY1 = 1_798_761_600.0  # 2027-01-01T00:00:00Z
DAY2 = DAY1 + 86400


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_test_database(request.param, tmp_path) as db:
        ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
        await ledger.start()
        for n, (time, key, team, model, cost) in enumerate([
            (DAY1 + 10, "a", "red", "gpt-4o-mini", 0.5),
            (DAY1 + 86399, "a", "red", "gpt-4o", 1.5),
            (DAY2 + 1, "b", "red", "gpt-4o-mini", 2.0),
            (DAY2 + 5, "c", None, "gpt-4o-mini", 4.0),
        ]):
            ledger.record(make_record(n, time=time, key_id=key, team=team, model=model,
                                      cost=cost, partial=n == 3,
                                      deployment="east" if n < 2 else None,
                                      attempts=2 if n == 1 else 1,
                                      fallback_reason="error" if n == 1 else None))
        ledger.record(make_record(9, time=DAY2 + 9, key_id="b", team="red", cost=0.0,
                                  grouping="hit", saved_tokens=15, charged=False))
        assert await ledger.flush()
        yield ledger
        await ledger.aclose()


def db_of(ledger: Ledger) -> Database:
    return ledger.db


async def test_totals(ledger: Ledger) -> None:
    [row] = await usage_report(db_of(ledger), UsageQuery())
    assert row == {"requests": 5, "prompt_tokens": 50, "completion_tokens": 25,
                   "cached_tokens": 10, "total_tokens": 75, "cost": 8.0, "saved_tokens": 15,
                   "partial_requests": 1, "retried_requests": 1, "fallback_requests": 1}


async def test_group_by_team_key_model_deployment_day(ledger: Ledger) -> None:
    db = db_of(ledger)
    by_team = await usage_report(db, UsageQuery(group_by="team"))
    assert [(r["team"], r["requests"], r["cost"]) for r in by_team] == [
        ("red", 4, 4.0), (None, 1, 4.0)]
    by_key = await usage_report(db, UsageQuery(group_by="key"))
    assert [(r["key_id"], r["requests"]) for r in by_key] == [("a", 2), ("b", 2), ("c", 1)]
    by_model = await usage_report(db, UsageQuery(group_by="model"))
    assert [(r["model"], r["requests"]) for r in by_model] == [("gpt-4o", 1),
                                                               ("gpt-4o-mini", 4)]
    by_deployment = await usage_report(db, UsageQuery(group_by="deployment"))
    assert [(r["deployment"], r["requests"], r["cost"], r["retried_requests"],
             r["fallback_requests"]) for r in by_deployment] == [
        ("east", 2, 2.0, 1, 1), (None, 3, 6.0, 0, 0)]
    by_day = await usage_report(db, UsageQuery(group_by="day"))
    assert [(r["day"], r["requests"], r["cost"]) for r in by_day] == [
        ("2027-01-01", 2, 2.0), ("2027-01-02", 3, 6.0)]


async def test_filters(ledger: Ledger) -> None:
    db = db_of(ledger)
    [row] = await usage_report(db, UsageQuery(since=DAY2, team="red"))
    assert (row["requests"], row["cost"], row["saved_tokens"]) == (2, 2.0, 15)
    [row] = await usage_report(db, UsageQuery(until=DAY2, model="gpt-4o-mini"))
    assert row["requests"] == 1
    rows = await usage_report(db, UsageQuery(key_id="nobody", group_by="team"))
    assert rows == []
    with pytest.raises(ValueError):
        await usage_report(db, UsageQuery(group_by="week"))  # type: ignore[arg-type]


def test_prices_exact_glob_cached_and_unpriced() -> None:
    prices = Prices({
        "gpt-4o-mini": PriceConfig(input=0.15, output=0.60, cached_input=0.075),
        "gpt-4o*": PriceConfig(input=2.5, output=10.0),
    })
    usage = Usage(prompt=1_000_000, completion=500_000, cached=400_000, total=1_500_000)
    # (1M - 0.4M) * 0.15 + 0.4M * 0.075 + 0.5M * 0.60, per million
    assert prices.cost(usage, "gpt-4o-mini") == pytest.approx(0.09 + 0.03 + 0.30)
    # The glob, cached tokens at the input price (no cached_input).
    assert prices.cost(usage, "gpt-4o-2024-08-06") == pytest.approx(2.5 + 5.0)
    assert prices.cost(usage, "smollm2") == 0.0  # not priced: free (local models)
    assert prices.cost(usage, None, "gpt-4o-mini") == pytest.approx(0.42)  # next name
    assert prices.cost(None, "gpt-4o-mini") == 0.0
