"""The usage ledger against real SQLite and PostgreSQL: spool, batching writer, replay."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.record import TABLE
from llm_gateway.accounting.spool import SEGMENT, Spool
from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.storage.database import Database

from ledger_support import make_record
from services import open_test_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_test_database(request.param, tmp_path) as database:
        yield database


async def rows(db: Database) -> list[dict]:
    return await db.fetch(f"SELECT * FROM {TABLE} ORDER BY time")


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT}"))


async def test_records_reach_the_database_with_every_field(db: Database, tmp_path: Path) -> None:
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
    await ledger.start()
    rec = make_record(1, partial=True, grouping="coalesced", saved_tokens=15, charged=False,
                      ttft_ms=None, key_id=None, team=None, endpoint="/files/f-1", method="GET",
                      request_bytes=0, response_bytes=20, units=2.5, unit="seconds",
                      object_id="file-1", deployment="east", attempts=2,
                      fallback_reason="rate_limit")
    ledger.record(rec)
    assert ledger.pending == 1
    assert await ledger.flush()
    assert ledger.pending == 0
    [row] = await rows(db)
    assert row == {
        "request_id": "req_1", "time": rec.time, "key_id": None, "team": None,
        "model": "gpt-4o-mini", "served_model": "gpt-4o-mini", "backend": "openai",
        "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 2, "cost": 0.001,
        "latency_ms": 12.5, "ttft_ms": None, "status": 200, "outcome": "ok", "partial": 1,
        "grouping": "coalesced", "saved_tokens": 15, "charged": 0,
        "record_id": rec.record_id, "endpoint": "/files/f-1", "method": "GET",
        "request_bytes": 0, "response_bytes": 20, "units": 2.5, "unit": "seconds",
        "object_id": "file-1", "deployment": "east", "attempts": 2,
        "fallback_reason": "rate_limit"}
    await ledger.aclose()


async def test_batches_and_idempotent_replay(db: Database, tmp_path: Path) -> None:
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600, batch_size=7)
    await ledger.start()
    records = [make_record(i) for i in range(50)]
    for rec in records:
        ledger.record(rec)
    assert await ledger.flush()
    # The same records again (a replay after a crash between insert and delete): no doubles.
    for rec in records[:20]:
        ledger.record(rec)
    assert await ledger.flush()
    assert len(await rows(db)) == 50
    assert ledger.writer.written == 70  # all were sent; the database kept each once
    await ledger.aclose()


async def test_same_client_request_id_twice_is_two_records(db: Database,
                                                           tmp_path: Path) -> None:
    """A client that reuses its x-request-id is still charged for every request."""
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
    await ledger.start()
    ledger.record(make_record(1))
    ledger.record(make_record(1))
    await ledger.aclose()
    assert [r["request_id"] for r in await rows(db)] == ["req_1", "req_1"]


async def test_shutdown_flushes_and_leaves_no_spool(db: Database, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    ledger = Ledger(db, spool, flush_seconds=3600)
    await ledger.start()
    for i in range(30):
        ledger.record(make_record(i))
    assert len(segments(spool)) == 1
    await ledger.aclose()
    assert len(await rows(db)) == 30
    assert list(spool.iterdir()) == []


async def test_a_full_batch_wakes_the_writer(db: Database, tmp_path: Path) -> None:
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600, batch_size=5)
    await ledger.start()
    for i in range(5):
        ledger.record(make_record(i))
    assert ledger.writer._wake.is_set()  # written at once, not after the hour
    await ledger.aclose()


async def test_restart_replays_a_leftover_spool(db: Database, tmp_path: Path) -> None:
    """A process that died with records spooled: the next start writes them."""
    spool_dir = tmp_path / "spool"
    dead = Spool(spool_dir)
    dead.open()
    for i in range(12):
        dead.append(make_record(i).to_json() + b"\n")
    dead.seal()
    dead.append(make_record(12).to_json() + b"\n")
    dead.append(b'{"request_id": "torn", "ti')  # a machine crash mid-line
    os.close(dead._lock_fd)  # how its death looks to others: the flock is gone
    os.close(dead._fd)

    metrics = GatewayMetrics()
    ledger = Ledger(db, spool_dir, flush_seconds=3600, metrics=metrics)
    await ledger.start()
    assert await ledger.flush()
    assert [r["request_id"] for r in await rows(db)] == [f"req_{i}" for i in range(13)]
    assert metrics.registry.get_sample_value("llm_gateway_ledger_dropped_total") == 1
    await ledger.aclose()
    assert list(spool_dir.iterdir()) == []


async def test_a_live_owners_spool_is_left_alone(db: Database, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    other = Ledger(db, spool_dir, flush_seconds=3600)
    await other.start()
    other.record(make_record(1))
    other.spool.seal()
    mine = Ledger(db, spool_dir, flush_seconds=3600)
    await mine.start()
    assert await mine.flush()
    assert await rows(db) == []  # `other` is alive: its records are its own to write
    await other.aclose()
    await mine.aclose()
    assert len(await rows(db)) == 1


async def test_big_spools_rotate_into_bounded_segments(db: Database, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    ledger = Ledger(db, spool_dir, flush_seconds=3600, batch_size=10_000)
    ledger.spool.max_segment_bytes = 4096
    await ledger.start()
    for i in range(200):
        ledger.record(make_record(i))
    assert len(segments(spool_dir)) > 5
    assert ledger.pending == 200
    assert await ledger.flush()
    assert len(await rows(db)) == 200
    await ledger.aclose()


async def test_spent_by_key_team_and_time(db: Database, tmp_path: Path) -> None:
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
    await ledger.start()
    base = 1_700_000_000.0
    ledger.record(make_record(1, time=base, key_id="a", team="red", cost=1.0))
    ledger.record(make_record(2, time=base + 10, key_id="a", team="red", cost=2.0))
    ledger.record(make_record(3, time=base + 10, key_id="b", team="red", cost=4.0))
    ledger.record(make_record(4, time=base + 10, key_id="c", team="blue", cost=8.0))
    # Grouped and not charged: it counts nowhere.
    ledger.record(make_record(5, time=base + 10, key_id="a", team="red", cost=0.0,
                              charged=False, grouping="hit", saved_tokens=15))
    assert await ledger.flush()
    assert await ledger.spent(key_id="a", since=base) == (30, 3.0)
    assert await ledger.spent(key_id="a", since=base + 5) == (15, 2.0)
    assert await ledger.spent(team="red", since=0) == (45, 7.0)
    assert await ledger.spent(team="blue", key_id="c", since=0) == (15, 8.0)
    assert await ledger.spent(team="green", since=0) == (0, 0.0)
    await ledger.aclose()


async def test_records_after_close_are_counted_as_dropped(db: Database,
                                                          tmp_path: Path) -> None:
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
    await ledger.start()
    await ledger.aclose()
    ledger.record(make_record(1))  # must not raise
    assert ledger.dropped == 1
