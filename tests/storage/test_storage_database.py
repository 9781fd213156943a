"""The Database seam, against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llm_gateway.config import parse_config
from llm_gateway.storage.connect import connect, open_database
from llm_gateway.storage.database import Database, split_statements
from llm_gateway.storage.postgres import redact, rowcount, to_dollar

ITEMS = "CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, price DOUBLE PRECISION)"


async def test_execute_fetch_and_rowcounts(db: Database) -> None:
    await db.migrate("t", [ITEMS])
    assert await db.execute("INSERT INTO items (id, n, price) VALUES (?, ?, ?)", "a", 1, 0.5) == 1
    await db.executemany("INSERT INTO items (id, n, price) VALUES (?, ?, ?)",
                         [("b", 2, 1.25), ("c", 3, None)])
    assert await db.execute("UPDATE items SET n = n + 10 WHERE n >= ?", 2) == 2
    rows = await db.fetch("SELECT id, n, price FROM items ORDER BY id")
    assert rows == [{"id": "a", "n": 1, "price": 0.5}, {"id": "b", "n": 12, "price": 1.25},
                    {"id": "c", "n": 13, "price": None}]
    assert await db.fetchone("SELECT n FROM items WHERE id = ?", "b") == {"n": 12}
    assert await db.fetchone("SELECT n FROM items WHERE id = ?", "zzz") is None
    # A `?` inside a literal is text, not a placeholder.
    assert await db.fetchone("SELECT 'what?' AS q, n FROM items WHERE id = ?", "a") == {
        "q": "what?", "n": 1}


async def test_on_conflict_do_nothing_is_idempotent(db: Database) -> None:
    await db.migrate("t", [ITEMS])
    sql = "INSERT INTO items (id, n) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
    await db.executemany(sql, [("a", 1), ("b", 2)])
    await db.executemany(sql, [("a", 100), ("b", 200), ("c", 3)])
    assert await db.execute(sql, "a", 1000) == 0
    rows = await db.fetch("SELECT id, n FROM items ORDER BY id")
    assert [(r["id"], r["n"]) for r in rows] == [("a", 1), ("b", 2), ("c", 3)]


async def test_transaction_commits_or_rolls_back(db: Database) -> None:
    await db.migrate("t", [ITEMS])
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "kept", 1)
        assert await tx.fetchone("SELECT n FROM items WHERE id = ?", "kept") == {"n": 1}
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "undone", 1)
            await tx.executemany("INSERT INTO items (id, n) VALUES (?, ?)", [("undone2", 2)])
            raise RuntimeError("boom")
    rows = await db.fetch("SELECT id FROM items ORDER BY id")
    assert [r["id"] for r in rows] == ["kept"]


async def test_statements_outside_a_transaction_are_not_part_of_it(db: Database) -> None:
    """Another task's write while a transaction is open survives that transaction's
    rollback (SQLite shares one connection: the transaction must keep others out)."""
    await db.migrate("t", [ITEMS])
    inside = asyncio.Event()

    async def other() -> None:
        await inside.wait()
        await db.execute("INSERT INTO items (id, n) VALUES (?, ?)", "other", 1)

    task = asyncio.create_task(other())
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO items (id, n) VALUES (?, ?)", "mine", 1)
            inside.set()
            await asyncio.sleep(0.05)  # let the other task queue its statement
            raise RuntimeError("roll back")
    await task
    rows = await db.fetch("SELECT id FROM items")
    assert [r["id"] for r in rows] == ["other"]


async def test_migrate_applies_each_step_once(db: Database) -> None:
    steps = [ITEMS, "CREATE INDEX items_n ON items (n); INSERT INTO items (id, n) VALUES ('x', 1)"]
    await db.migrate("comp", steps)
    await db.migrate("comp", steps)  # nothing new
    await db.migrate("comp", [*steps, "ALTER TABLE items ADD COLUMN note TEXT"])
    await db.migrate("other", ["CREATE TABLE other_t (k TEXT)"])  # components are apart
    assert await db.fetchone("SELECT COUNT(*) AS c FROM items") == {"c": 1}
    await db.execute("UPDATE items SET note = ? WHERE id = ?", "hello", "x")
    versions = await db.fetch("SELECT component, version FROM schema_migrations"
                              " ORDER BY component, version")
    assert [(v["component"], v["version"]) for v in versions] == [
        ("comp", 1), ("comp", 2), ("comp", 3), ("other", 1)]


async def test_a_failed_step_is_not_recorded(db: Database) -> None:
    with pytest.raises(Exception, match=r"(?i)syntax"):
        await db.migrate("bad", [ITEMS, "CREATE TABLE broken (x TEXT); NOT SQL AT ALL"])
    # Step 1 and the failed step 2 were one transaction: neither is applied (else creating
    # `items` again would fail).
    await db.migrate("bad", [ITEMS])
    versions = await db.fetch("SELECT component, version FROM schema_migrations")
    assert [(v["component"], v["version"]) for v in versions] == [("bad", 1)]
    assert await db.ping()


async def test_concurrent_migrations_from_two_connections(db: Database, tmp_path: Path) -> None:
    """Gateway processes starting together: one applies the steps, the others see them."""
    config = parse_config({"storage": {"data_dir": str(tmp_path)}}, env={})
    url = None if db.dialect == "sqlite" else _raw_url(db)
    others = [await connect(url, config) for _ in range(3)]
    try:
        steps = [ITEMS, "INSERT INTO items (id, n) VALUES ('once', 1)"]
        await asyncio.gather(*(o.migrate("race", steps) for o in [db, *others]))
        assert await db.fetchone("SELECT COUNT(*) AS c FROM items") == {"c": 1}
    finally:
        for other in others:
            await other.aclose()


def _raw_url(db: Database) -> str:
    return db._dsn  # type: ignore[attr-defined]


async def test_open_database_sqlite_default_in_data_dir(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config({"storage": {"data_dir": "~/deep/state"}}, env={})
    db = await open_database(config)
    assert db is not None and db.dialect == "sqlite"
    try:
        assert await db.ping()
        assert (tmp_path / "deep" / "state" / "gateway.db").is_file()
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode == {"journal_mode": "wal"}
    finally:
        await db.aclose()


async def test_open_database_sqlite_url(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.db"
    config = parse_config({"storage": {"url": f"sqlite:///{path}"}}, env={})
    db = await open_database(config)
    assert db is not None
    await db.aclose()
    assert path.is_file()


async def test_open_database_none_when_nothing_needs_it(tmp_path: Path) -> None:
    off = {"storage": {"data_dir": str(tmp_path)}, "accounting": {"enabled": False}}
    assert await open_database(parse_config(off, env={})) is None
    for mode in ("keys", "passthrough"):
        db = await open_database(parse_config({**off, "auth": {"mode": mode}}, env={}))
        assert db is not None
        await db.aclose()


def test_placeholders_and_helpers() -> None:
    assert to_dollar("SELECT ? , '?', \"a?\", ?") == "SELECT $1 , '?', \"a?\", $2"
    assert rowcount("INSERT 0 3") == 3
    assert rowcount("UPDATE 2") == 2
    assert rowcount("CREATE TABLE") == 0
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert split_statements("A; -- c; x\nB 'x;y';\n;") == ["A", "B 'x;y'"]
