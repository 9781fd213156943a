"""The `Database` seam, shared by SQLite (the default, one file) and PostgreSQL (connect.py
opens either).

Every component talks to storage through the same small interface, with `?` placeholders
whatever the dialect, and migrates its own tables at start with `migrate(component, steps)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from llm_gateway.config import Config

SQLITE_FILE = "gateway.db"

# Created by `migrate` in either dialect; one row per applied step of each component.
MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " component TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (component, version))"
)


class Executor(Protocol):
    """What a transaction yields: the query half of a Database, bound to one connection."""

    dialect: str

    async def execute(self, sql: str, *args: Any) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...
    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...


class Database(Executor, Protocol):
    """An open database; placeholders are always `?` (converted to `$n` for PostgreSQL)."""

    url: str  # where it is, without any password (for logs and messages)

    def transaction(self) -> AbstractAsyncContextManager[Executor]: ...
    async def migrate(self, component: str, steps: Sequence[str]) -> None: ...
    async def ping(self) -> bool: ...
    async def check(self) -> str | None: ...  # for /readyz: None, or why it cannot be used
    async def aclose(self) -> None: ...


def data_dir(config: Config) -> Path:
    """`storage.data_dir`, with `~` expanded, created (with its parents) if missing."""
    path = Path(os.path.expanduser(config.storage.data_dir))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sqlite_path(url: str | None, config: Config) -> Path:
    """The SQLite file for `storage.url` (None: <data_dir>/gateway.db).

    SQLAlchemy's convention: `sqlite:///rel/file.db` is relative to the working directory,
    `sqlite:////abs/file.db` absolute; `~` is expanded.
    """
    if url is None:
        return data_dir(config) / SQLITE_FILE
    path = Path(os.path.expanduser(url.removeprefix("sqlite:///")))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def needs_database(config: Config) -> bool:
    """Keys and teams (auth modes keys and passthrough) and the usage ledger live in it."""
    return config.auth.mode in ("keys", "passthrough") or config.accounting.enabled


def split_statements(script: str) -> list[str]:
    """A migration step's statements, split on `;` outside quotes and comments."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]

