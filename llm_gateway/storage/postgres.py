"""PostgreSQL behind the `Database` seam: an asyncpg connection pool (extra `postgres`).

Several gateway replicas share one PostgreSQL; `migrate` serialises them with an advisory
lock so that exactly one applies a new step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llm_gateway.storage.database import MIGRATIONS_TABLE, Executor
from llm_gateway.storage.failures import DatabaseUnavailable, translated

Row = dict[str, Any]

# Defaults of storage.pool_size and storage.pool_timeout_seconds: each gateway process holds
# at most this many connections, and a query waits this long for one of them to be free.
POOL_MAX = 10
POOL_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
# A statement that takes longer is failed: callers (the ledger writer) retry, rather than
# hang on a server that went away without closing the socket.
COMMAND_TIMEOUT = 30.0
PING_TIMEOUT = 3.0
READY_TIMEOUT = 1.0  # /readyz answers well within a probe's timeout (k8s: 3 s)
MIGRATION_LOCK = 0x6C67775F6D6967  # "lgw_mig": pg_advisory_xact_lock's key


@lru_cache(maxsize=512)
def to_dollar(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...`, leaving quoted text alone."""
    out: list[str] = []
    quote: str | None = None
    n = 0
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


def rowcount(status: str) -> int:
    """The row count from a command tag: "INSERT 0 3" -> 3, "UPDATE 2" -> 2, "CREATE TABLE"
    -> 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Queries:
    """The query methods, on one connection (inside a transaction) or, in PostgresDatabase,
    on any free connection of the pool."""

    dialect = "postgresql"

    def __init__(self, conn: Any, where: str) -> None:
        self._conn = conn
        self._where = where  # the URL without its password, for DatabaseUnavailable

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        yield self._conn

    # The server being down, read-only or out of connections is a 503 (storage/failures.py).
    async def execute(self, sql: str, *args: Any) -> int:
        with translated(self._where):
            async with self._connection() as conn:
                return rowcount(await conn.execute(to_dollar(sql), *args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with translated(self._where):
                async with self._connection() as conn:
                    await conn.executemany(to_dollar(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with translated(self._where):
            async with self._connection() as conn:
                return [dict(r) for r in await conn.fetch(to_dollar(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        with translated(self._where):
            async with self._connection() as conn:
                row = await conn.fetchrow(to_dollar(sql), *args)
        return None if row is None else dict(row)


class PostgresDatabase(_Queries):
    def __init__(self, url: str, pool: Any, pool_size: int = POOL_MAX,
                 pool_timeout: float = POOL_TIMEOUT) -> None:
        super().__init__(None, redact(url))
        self.url = redact(url)
        self._dsn = url  # with its password: for reconnecting tools, never for messages
        self._pool = pool
        self._pool_size = pool_size
        self._pool_timeout = pool_timeout

    @classmethod
    async def open(cls, url: str, pool_size: int = POOL_MAX,
                   pool_timeout: float = POOL_TIMEOUT) -> PostgresDatabase:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("storage.url is PostgreSQL but asyncpg is not installed: "
                               "pip install 'llm-gateway[postgres]'") from exc
        # min_size=0: connections are made on demand, so a pool outlives a server restart
        # without holding dead connections open.
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=pool_size, timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT)
        db = cls(url, pool, pool_size, pool_timeout)
        await db.fetchone("SELECT 1")  # fail at start, not at the first request
        return db

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A free connection of the pool, waiting at most `pool_timeout` for one: asyncpg
        would wait for ever, so a burst of requests, or statements that each take their
        30 s, queued every caller behind them without a bound."""
        try:
            conn = await self._pool.acquire(timeout=self._pool_timeout)
        except TimeoutError:
            if self._pool.get_size() < self._pool_size:
                raise  # still connecting: the server is slow or unreachable (a 503 as such)
            raise DatabaseUnavailable(
                f"The database ({self.url}) has no free connection: all {self._pool_size} "
                f"(storage.pool_size) were busy for {self._pool_timeout:g} seconds "
                "(storage.pool_timeout_seconds). Nothing was changed; retry later.") from None
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        with translated(self.url):
            async with self._connection() as conn, conn.transaction():
                yield _Queries(conn, self.url)

    async def migrate(self, component: str, steps: Sequence[str]) -> None:
        with translated(self.url):
            await self._migrate(component, steps)

    async def _migrate(self, component: str, steps: Sequence[str]) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(MIGRATIONS_TABLE)
            done = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM"
                                       " schema_migrations WHERE component = $1", component)
            for version in range(done + 1, len(steps) + 1):
                # Without arguments asyncpg uses the simple protocol: several statements
                # separated by `;` run as one step.
                await conn.execute(steps[version - 1])
                await conn.execute("INSERT INTO schema_migrations (component, version,"
                                   " applied_at) VALUES ($1, $2, $3)",
                                   component, version, time.time())

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT):
                return await self._pool.fetchval("SELECT 1") == 1
        except Exception:
            return False

    async def check(self) -> str | None:
        """For /readyz: None when a trivial query answers within READY_TIMEOUT, else why."""
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self._pool.fetchval("SELECT 1")
        except TimeoutError:
            return f"the database ({self.url}) did not answer within {READY_TIMEOUT:g} s"
        except Exception as exc:
            return f"the database ({self.url}) cannot be reached: {type(exc).__name__}: {exc}"
        return None

    async def aclose(self) -> None:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()
