"""SQLite behind the `Database` seam: stdlib sqlite3 on one dedicated thread.

sqlite3 calls block, so they never run on the event loop: a one-thread executor owns the
connection and runs every statement in submission order. WAL lets readers (the usage CLI,
another gateway process) work while a writer commits; synchronous=NORMAL keeps commits cheap
(a power cut may lose the last transactions, never corrupt the file; the ledger's own spool
covers what was not yet committed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from llm_gateway.storage.database import MIGRATIONS_TABLE, Executor, split_statements
from llm_gateway.storage.failures import DatabaseLost, DatabaseUnavailable, unavailable

T = TypeVar("T")
log = logging.getLogger("llm_gateway.storage")
Row = dict[str, Any]

# How long a writer waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 30.0
# How long a caller waits for the connection (storage.pool_timeout_seconds's default).
WAIT_SECONDS = 10.0


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: autocommit, with explicit BEGIN where atomicity matters, so no
    # statement is left waiting in an implicit transaction that holds the write lock.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _execute(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    return max(conn.execute(sql, args).rowcount, 0)


def _executemany(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    if conn.in_transaction:
        conn.executemany(sql, rows)
        return
    # One transaction for the batch: all or nothing, and one commit instead of len(rows).
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _fetch(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
    cursor = conn.execute(sql, args)
    columns = [d[0] for d in cursor.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _fetchone(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Row | None:
    cursor = conn.execute(sql, args)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _migrate(conn: sqlite3.Connection, component: str, steps: Sequence[str]) -> None:
    conn.execute(MIGRATIONS_TABLE)
    # IMMEDIATE takes the write lock first: of several processes starting together, one
    # applies the steps and the others then see them applied.
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
                            " WHERE component = ?", (component,)).fetchone()[0]
        for version in range(done + 1, len(steps) + 1):
            for statement in split_statements(steps[version - 1]):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (component, version, applied_at)"
                         " VALUES (?, ?, ?)", (component, version, time.time()))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Bound:
    """The queries of a transaction: run on the connection without taking the lock, which the
    transaction holds."""

    dialect = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._db._query(_execute, sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._db._query(_executemany, sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._db._query(_fetch, sql, args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        return await self._db._query(_fetchone, sql, args)


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor,
                 wait: float = WAIT_SECONDS) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._conn = conn
        self._executor = executor
        # The file opened: deleted or replaced later, the connection would go on writing to
        # a file nobody can see, every record and key lost without a sign (see `lost`).
        opened = os.stat(path)
        self._identity = (opened.st_dev, opened.st_ino)
        self._lost_reported = False
        # One connection: a transaction must keep other callers' statements out of it.
        self._lock = asyncio.Lock()
        self._wait = wait
        self._bound = _Bound(self)

    @classmethod
    async def open(cls, path: Path, wait: float = WAIT_SECONDS) -> SqliteDatabase:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-gateway-sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, conn, executor, wait)

    def lost(self) -> str | None:
        """Why the file we opened is no longer the database at our path, or None."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return (f"the database file {self.path} was deleted while the gateway ran; "
                    "restore it (or move it back) and restart the gateway")
        except OSError as exc:
            return f"the database file {self.path} cannot be checked: {exc}"
        if (now.st_dev, now.st_ino) != self._identity:
            return (f"the database file {self.path} was replaced while the gateway ran; "
                    "restart the gateway to use the new file")
        return None

    async def check(self) -> str | None:
        return self.lost()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The connection, waiting at most `wait` seconds for it: behind a queue of callers
        (each statement may wait up to BUSY_TIMEOUT_SECONDS for another process's write
        lock) a request would otherwise wait without a bound. (asyncio.Lock leaves no lock
        behind when the wait is cut.)"""
        try:
            async with asyncio.timeout(self._wait):
                await self._lock.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"The database ({self.url}) was busy for {self._wait:g} seconds "
                "(storage.pool_timeout_seconds). Nothing was changed; retry later.") from None
        try:
            yield
        finally:
            self._lock.release()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn, *args)

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn` on the connection, once the file is known to be ours; the database's own
        failures (read-only, I/O, full...) become DatabaseUnavailable (a 503)."""
        try:
            return await self._run(self._guarded, fn, *args)
        except sqlite3.Error as exc:
            failure = unavailable(exc, self.url)
            if failure is None:
                raise
            raise failure from exc

    def _guarded(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        problem = self.lost()  # a stat, on the database thread: microseconds
        if problem is not None:
            if not self._lost_reported:  # once here; the ledger writer repeats it
                self._lost_reported = True
                log.error("storage: %s; keys and records cannot be written or read", problem)
            raise DatabaseLost(f"The database cannot be used: {problem}.")
        return fn(conn, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._locked():
            return await self._query(_execute, sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._locked():
            await self._query(_executemany, sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._locked():
            return await self._query(_fetch, sql, args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        async with self._locked():
            return await self._query(_fetchone, sql, args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._locked():
            await self._query(_execute, "BEGIN IMMEDIATE", ())
            try:
                yield self._bound
            except BaseException:
                # Submitted before the lock is released, so it runs before anyone else's
                # statement even when this task is being cancelled.
                await asyncio.shield(self._run(_rollback))
                raise
            try:
                await self._query(_execute, "COMMIT", ())
            except BaseException:
                await asyncio.shield(self._run(_rollback))
                raise

    async def migrate(self, component: str, steps: Sequence[str]) -> None:
        async with self._locked():
            await self._query(_migrate, component, list(steps))

    async def ping(self) -> bool:
        try:
            return await self.fetchone("SELECT 1 AS ok") is not None
        except (sqlite3.Error, DatabaseUnavailable):
            return False

    async def aclose(self) -> None:
        async with self._lock:  # (no bound: what runs finishes first)
            await self._run(lambda conn: conn.close())
        self._executor.shutdown(wait=False)
