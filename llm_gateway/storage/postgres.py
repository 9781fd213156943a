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
from llm_gateway.storage.failures import translated

Row = dict[str, Any]

POOL_MAX = 10
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
    """The query methods, over a pool (each call takes any free connection) or one
    connection (inside a transaction): asyncpg gives both the same methods."""

    dialect = "postgresql"

    def __init__(self, target: Any, where: str) -> None:
        self._target = target
        self._where = where  # the URL without its password, for DatabaseUnavailable

    # The server being down, read-only or out of connections is a 503 (storage/failures.py).
    async def execute(self, sql: str, *args: Any) -> int:
        with translated(self._where):
            return rowcount(await self._target.execute(to_dollar(sql), *args))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with translated(self._where):
                await self._target.executemany(to_dollar(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with translated(self._where):
            return [dict(r) for r in await self._target.fetch(to_dollar(sql), *args)]

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        with translated(self._where):
            row = await self._target.fetchrow(to_dollar(sql), *args)
        return None if row is None else dict(row)


class PostgresDatabase(_Queries):
    def __init__(self, url: str, pool: Any) -> None:
        super().__init__(pool, redact(url))
        self.url = redact(url)
        self._dsn = url  # with its password: for reconnecting tools, never for messages
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("storage.url is PostgreSQL but asyncpg is not installed: "
                               "pip install 'llm-gateway[postgres]'") from exc
        # min_size=0: connections are made on demand, so a pool outlives a server restart
        # without holding dead connections open.
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT)
        db = cls(url, pool)
        await db.fetchone("SELECT 1")  # fail at start, not at the first request
        return db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        with translated(self.url):
            async with self._pool.acquire() as conn, conn.transaction():
                yield _Queries(conn, self.url)

    async def migrate(self, component: str, steps: Sequence[str]) -> None:
        with translated(self.url):
            await self._migrate(component, steps)

    async def _migrate(self, component: str, steps: Sequence[str]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
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
