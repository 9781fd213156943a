"""Opening the database that `storage.url` names: SQLite (the default) or PostgreSQL."""

from __future__ import annotations

from llm_gateway.config import Config
from llm_gateway.storage.database import Database, needs_database, sqlite_path
from llm_gateway.storage.postgres import PostgresDatabase
from llm_gateway.storage.sqlite import SqliteDatabase


async def open_database(config: Config) -> Database | None:
    """The opened Database named by `storage.url`, or None when nothing needs one.

    Components migrate their own tables afterwards (`await db.migrate(...)`).
    """
    if not needs_database(config):
        return None
    return await connect(config.storage.url, config)


async def connect(url: str | None, config: Config) -> Database:
    """Open `url` (None or sqlite:///...: SQLite; postgresql://...: PostgreSQL)."""
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        storage = config.storage
        return await PostgresDatabase.open(url, storage.pool_size, storage.pool_timeout_seconds)
    return await SqliteDatabase.open(sqlite_path(url, config),
                                     config.storage.pool_timeout_seconds)
