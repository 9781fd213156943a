"""How long a query waits for a database connection, against a real PostgreSQL and a real
SQLite file: at most `storage.pool_timeout_seconds`, for one of PostgreSQL's
`storage.pool_size` connections or for SQLite's one.

asyncpg waits for ever for a free pooled connection: with every connection held by a slow
transaction (or each statement taking its 30 s), every later query queued behind them with no
bound, and each request with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.storage.connect import connect
from llm_gateway.storage.failures import DatabaseUnavailable

from services import fresh_postgres_database

SIZE = 2
WAIT = 0.5  # storage.pool_timeout_seconds, seconds


def _config(tmp_path: Path) -> object:
    storage = {"data_dir": str(tmp_path), "pool_size": SIZE, "pool_timeout_seconds": WAIT}
    return parse_config({"storage": storage}, env={})


async def test_a_query_with_every_connection_busy_gets_a_503_in_bounded_time(
        tmp_path: Path) -> None:
    with fresh_postgres_database() as url:
        db = await connect(url, _config(tmp_path))
        try:
            await _check_saturated_pool(db)
        finally:
            await db.aclose()


@contextlib.asynccontextmanager
async def held(db, count: int) -> AsyncIterator[None]:
    """``count`` transactions open on ``db`` (each holding a connection) until the block ends."""
    release = asyncio.Event()
    holding = asyncio.Semaphore(0)

    async def hold() -> None:
        async with db.transaction() as tx:
            await tx.fetchone("SELECT 1")
            holding.release()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(count)]
    try:
        for _ in range(count):
            await asyncio.wait_for(holding.acquire(), 10)
        yield
    finally:
        release.set()
        await asyncio.gather(*holders)


async def _check_saturated_pool(db) -> None:
    async with held(db, SIZE), asyncio.timeout(WAIT + 5):
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as caught:
            await db.fetchone("SELECT 1")
        with pytest.raises(DatabaseUnavailable):  # a transaction waits the same way
            async with db.transaction():
                pass
        waited = time.monotonic() - started
    assert waited >= 2 * WAIT * 0.9
    error = caught.value
    assert error.status == 503 and error.code == "database_unavailable"
    message = str(error)
    assert f"all {SIZE} (storage.pool_size)" in message
    assert "storage.pool_timeout_seconds" in message and "***" not in message
    # Once the holders are done, the pool serves again.
    assert await db.fetchone("SELECT 2 AS two") == {"two": 2}


@pytest.mark.parametrize(("key", "value", "says"), [
    ("pool_size", 0, "must be >= 1"), ("pool_size", 5000, "must be <= 1000"),
    ("pool_timeout_seconds", 0, "must be > 0")])
def test_bad_pool_settings_are_refused_naming_the_key(key: str, value: float, says: str) -> None:
    with pytest.raises(ConfigError, match=rf"storage\.{key}: {says}"):
        parse_config({"storage": {key: value}}, env={})


async def test_sqlite_callers_wait_a_bounded_time_for_its_one_connection(tmp_path: Path) -> None:
    """SQLite has one connection, which a transaction holds: callers queued behind it (each
    statement may wait 30 s for another process's write lock) waited without a bound."""
    db = await connect(None, _config(tmp_path))
    try:
        async with held(db, 1), asyncio.timeout(WAIT + 5):
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as caught:
                await db.fetchone("SELECT 1")
            waited = time.monotonic() - started
        assert waited >= WAIT * 0.9
        assert caught.value.status == 503
        assert "busy for 0.5 seconds (storage.pool_timeout_seconds)" in str(caught.value)
        assert await db.fetchone("SELECT 2 AS two") == {"two": 2}
    finally:
        await db.aclose()
