"""Real PostgreSQL and Redis for tests: the servers `scripts/test-services.sh` starts.

`postgres_url()` / `redis_url()` return the URL from LLM_GATEWAY_TEST_POSTGRES_URL /
LLM_GATEWAY_TEST_REDIS_URL; without it the test is skipped with a reason, except in CI
(`CI=true`), where that is a failure. Start servers locally with

    eval "$(scripts/test-services.sh start)"

`fresh_postgres_database()` gives a test a database of its own on that server, and
`PostgresCluster` a private server that a test may stop and restart.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_VAR = "LLM_GATEWAY_TEST_POSTGRES_URL"
REDIS_VAR = "LLM_GATEWAY_TEST_REDIS_URL"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test-services.sh"
HINT = 'start one with: eval "$(scripts/test-services.sh start)"'

T = TypeVar("T")


def _required(what: str) -> None:
    """Skip, saying why; in CI a missing service is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the {what} tests, but {what} is not available", pytrace=False)
    pytest.skip(f"{what} is not available; {HINT}")


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_VAR)
    if not url:
        _required(f"PostgreSQL (set {POSTGRES_VAR})")
    return url  # type: ignore[return-value]


def redis_url() -> str:
    url = os.environ.get(REDIS_VAR)
    if not url:
        _required(f"Redis (set {REDIS_VAR})")
    return url  # type: ignore[return-value]


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (an
    async test): on a thread of its own."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database(url: str | None = None) -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards): its URL."""
    server = url or postgres_url()
    name = "lgw_" + uuid.uuid4().hex[:12]
    run_sync(lambda: _admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server, name)
    finally:
        run_sync(lambda: _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def storage_of(dialect: str, directory: Path) -> Iterator[dict[str, str]]:
    """A gateway's `storage` config: "sqlite" (its file in `directory`) or "postgresql" (a
    fresh database on the test server, dropped afterwards: stop the gateway before)."""
    if dialect == "sqlite":
        yield {"data_dir": str(directory)}
        return
    with fresh_postgres_database() as url:
        yield {"url": url, "data_dir": str(directory)}


@asynccontextmanager
async def open_test_database(dialect: str, directory: Path) -> AsyncIterator[Any]:
    """An opened storage Database: "sqlite" (a file in `directory`) or "postgresql" (a fresh
    database on the test server, dropped afterwards)."""
    from llm_gateway.config import parse_config
    from llm_gateway.storage.connect import connect

    config = parse_config({"storage": {"data_dir": str(directory)}}, env={})
    if dialect == "sqlite":
        db = await connect(None, config)
        try:
            yield db
        finally:
            await db.aclose()
        return
    with fresh_postgres_database() as url:
        db = await connect(url, config)
        try:
            yield db
        finally:
            await db.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """A private PostgreSQL server in a temp dir, for tests that stop and restart it."""

    def __init__(self) -> None:
        if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob(
                "*/bin/initdb")):
            _required("PostgreSQL (initdb; apt-get install postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="lgw-pg-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _script(self, *args: str) -> None:
        subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        if (self.dir / "pg").exists():
            self._script("pg-start", str(self.dir))
        else:
            self._script("pg-init", str(self.dir), str(self.port))
        return self

    def stop(self) -> None:
        self._script("pg-stop", str(self.dir))

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()
