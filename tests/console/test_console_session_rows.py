"""Session rows in the database (SQLite and PostgreSQL) and in memory: what is stored, what
a row without its cookie gives away (nothing), expiry, the bound on their number."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.console.session import Session
from llm_gateway.console.session_rows import (
    CONSOLE_STEPS,
    DatabaseSessionRows,
    SessionRows,
    row_id,
    seal,
    unseal,
)
from llm_gateway.console.sessions import SessionStore

from services import open_test_database

KEY = "sk-lgw-" + "k" * 43


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    async with open_test_database(request.param, tmp_path) as database:
        await database.migrate("console", CONSOLE_STEPS)
        yield database


def a_session(expires_at: float = 2e9, **fields) -> Session:
    return Session("key", expires_at, key=KEY, key_id="key_1", team="research", **fields)


def test_a_sealed_session_opens_only_with_its_own_id():
    session = a_session(chat_key="sk-lgw-chat", chat_key_id="key_2")
    sealed = seal("sid-one", session)
    opened = unseal("sid-one", sealed)
    assert opened is not None and opened.fields() == session.fields()
    assert unseal("sid-two", sealed) is None  # another id's key and row
    assert unseal("sid-one", sealed[:-4] + "AAAA") is None  # tampered
    assert unseal("sid-one", "not base64!") is None
    assert seal("sid-one", session) != sealed  # a fresh nonce each time


def test_a_stored_session_of_an_unknown_shape_is_no_session():
    # A row sealed by a version with other fields: what is known is read, and a row
    # without a kind or an expiry is no session (signed out), never an error.
    extra = {**a_session().fields(), "added_later": 1}
    assert Session.from_fields(extra).key == KEY
    with pytest.raises(TypeError):
        Session.from_fields({"kind": "admin"})
    with pytest.raises(ValueError):
        Session.from_fields({"kind": "root", "expires_at": 1.0})


async def test_rows_hold_no_key_token_or_id_in_the_clear(db):
    rows = DatabaseSessionRows(db)
    session = a_session(chat_key="sk-lgw-" + "c" * 43, chat_key_id="key_2")
    await rows.put("the-session-id", session, 100.0)
    (stored,) = await db.fetch("SELECT * FROM console_sessions")
    text = repr(stored)
    for secret in (KEY, session.chat_key, session.csrf, "the-session-id", "sk-lgw-"):
        assert secret not in text
    assert stored["id"] == row_id("the-session-id")
    assert stored["chat_key_id"] == "key_2" and stored["expires_at"] == session.expires_at
    found = await rows.get("the-session-id")
    assert found is not None and found.key == KEY and found.csrf == session.csrf
    assert await rows.get("another-id") is None


async def test_an_update_replaces_and_a_delete_forgets(db):
    rows = DatabaseSessionRows(db)
    session = a_session()
    await rows.put("sid", session, 100.0)
    session.chat_key, session.chat_key_id = "sk-lgw-chat", "key_9"
    assert await rows.update("sid", session) is True
    found = await rows.get("sid")
    assert found is not None and found.chat_key == "sk-lgw-chat"
    assert len(await db.fetch("SELECT id FROM console_sessions")) == 1
    assert await rows.delete("sid") is True
    assert await rows.delete("sid") is False
    assert await rows.get("sid") is None


async def test_expired_rows_go_and_each_playground_key_is_handed_back_once(db):
    rows, other_replica = DatabaseSessionRows(db), DatabaseSessionRows(db)
    await rows.put("old-1", a_session(50.0, chat_key="x", chat_key_id="key_a"), 1.0)
    await rows.put("old-2", a_session(60.0), 1.0)
    await rows.put("live", a_session(500.0, chat_key="y", chat_key_id="key_b"), 1.0)
    swept = await asyncio.gather(rows.sweep(100.0), other_replica.sweep(100.0))
    assert sorted(swept[0] + swept[1]) == ["key_a"]  # revoked by one replica, not two
    assert await rows.get("old-1") is None and await rows.get("live") is not None


async def test_the_oldest_sign_ins_go_beyond_the_bound(db):
    rows = DatabaseSessionRows(db)
    for n in range(5):
        await rows.put(f"s{n}", a_session(), float(n))
    await rows.trim(3)  # room for one more: two remain
    assert [await rows.get(f"s{n}") is not None for n in range(5)] == \
        [False, False, False, True, True]


async def test_memory_rows_behave_the_same():
    rows = SessionRows()
    for n in range(4):
        await rows.put(f"s{n}", a_session(10.0 * n, chat_key_id=f"key_{n}"), float(n))
    assert await rows.sweep(15.0) == ["key_0", "key_1"]
    await rows.trim(2)
    assert await rows.get("s2") is None and await rows.get("s3") is not None
    assert await rows.delete("s3") is True and await rows.get("s3") is None


async def test_a_change_to_a_session_signed_out_meanwhile_does_not_bring_it_back(db):
    # Replica A makes the playground key while replica B signs the session out: A's save
    # must not write the row again (a stolen cookie would work once more).
    a, b = SessionStore(b"s" * 32, 3600), SessionStore(b"s" * 32, 3600)
    await a.start(db, b"s" * 32)
    await b.start(db, b"s" * 32)
    cookie, session = await a.create("admin")
    assert await b.get(cookie) is not None
    await b.drop(cookie)
    session.chat_key, session.chat_key_id = "sk-lgw-late", "key_late"
    assert await a.save(session) is False
    assert await a.get(cookie) is None and await db.fetch("SELECT id FROM console_sessions") == []
    memory = SessionStore(b"s" * 32, 3600)
    cookie, session = await memory.create("admin")
    await memory.drop(cookie)
    assert await memory.save(session) is False and await memory.get(cookie) is None
