"""Where console sessions are kept: this process's memory, or the gateway's database.

In the database (SQLite or PostgreSQL, whichever `storage.url` names) every process and
replica sees every session: a browser may land on any of them, and a sign-out is seen by all
at once. A row is named by a hash of the session id and holds the session sealed (AES-256-GCM)
under a key derived from that id, which only the browser's cookie carries: the table alone,
a backup or a dump of it, holds no readable key, CSRF token or session id. Only the expiry
time and an admin's playground key id (an id, not a key: revoked once the session expires)
are plain.

The memory rows are the default until the database is given, and the only rows when there is
none (`auth.mode none` without a ledger).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import OrderedDict
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from llm_gateway.console.session import Session

CONSOLE_STEPS = [
    """
    CREATE TABLE console_sessions (
        id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        chat_key_id TEXT,
        sealed TEXT NOT NULL
    )
    """,
    "CREATE INDEX console_sessions_expiry ON console_sessions (expires_at)",
]
NONCE_BYTES = 12


class SessionRows:
    """Sessions in this process's memory, by session id: a cookie made here works only here."""

    def __init__(self) -> None:
        self._rows: OrderedDict[str, Session] = OrderedDict()

    async def put(self, sid: str, session: Session, created_at: float) -> None:
        self._rows[sid] = session

    async def update(self, sid: str, session: Session) -> bool:
        """Store a change to a session still here; False when it is gone (signed out)."""
        if sid not in self._rows:
            return False
        self._rows[sid] = session
        return True

    async def get(self, sid: str) -> Session | None:
        return self._rows.get(sid)

    async def delete(self, sid: str) -> bool:
        return self._rows.pop(sid, None) is not None

    async def sweep(self, now: float) -> list[str]:
        """Forget the sessions past their time; their playground key ids."""
        gone = [sid for sid, s in self._rows.items() if now >= s.expires_at]
        return [key for sid in gone if (key := self._rows.pop(sid).chat_key_id) is not None]

    async def trim(self, keep: int) -> None:
        """Forget the oldest sign-ins until fewer than `keep` remain."""
        while len(self._rows) >= keep:
            self._rows.popitem(last=False)


def row_id(sid: str) -> str:
    return hashlib.sha256(b"lgw-console-id\0" + sid.encode()).hexdigest()


def _cipher(sid: str) -> AESGCM:
    return AESGCM(hashlib.sha256(b"lgw-console-seal\0" + sid.encode()).digest())


def seal(sid: str, session: Session) -> str:
    nonce = os.urandom(NONCE_BYTES)
    body = _cipher(sid).encrypt(nonce, orjson.dumps(session.fields()), row_id(sid).encode())
    return base64.b64encode(nonce + body).decode()


def unseal(sid: str, sealed: str) -> Session | None:
    """The session sealed for `sid`; None when it was not (a row of another id, tampered)."""
    try:
        raw = base64.b64decode(sealed)
        plain = _cipher(sid).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                     row_id(sid).encode())
        return Session.from_fields(orjson.loads(plain))
    except (InvalidTag, ValueError, TypeError):
        return None


class DatabaseSessionRows(SessionRows):
    """Sessions in the `console_sessions` table (see the module's docstring)."""

    def __init__(self, db: Any) -> None:
        super().__init__()
        self.db = db

    async def put(self, sid: str, session: Session, created_at: float) -> None:
        await self.db.execute(
            # A new session (a fresh random id); changes go through `update`.
            "INSERT INTO console_sessions (id, created_at, expires_at, chat_key_id, sealed)"
            " VALUES (?, ?, ?, ?, ?)",
            row_id(sid), created_at, session.expires_at, session.chat_key_id,
            seal(sid, session))

    async def update(self, sid: str, session: Session) -> bool:
        # Never an upsert: a replica that signed the session out meanwhile has the last word.
        return await self.db.execute(
            "UPDATE console_sessions SET expires_at = ?, chat_key_id = ?, sealed = ?"
            " WHERE id = ?", session.expires_at, session.chat_key_id, seal(sid, session),
            row_id(sid)) > 0

    async def get(self, sid: str) -> Session | None:
        row = await self.db.fetchone("SELECT sealed FROM console_sessions WHERE id = ?",
                                     row_id(sid))
        return None if row is None else unseal(sid, row["sealed"])

    async def delete(self, sid: str) -> bool:
        return await self.db.execute("DELETE FROM console_sessions WHERE id = ?",
                                     row_id(sid)) > 0

    async def sweep(self, now: float) -> list[str]:
        rows = await self.db.fetch(
            "SELECT id, chat_key_id FROM console_sessions WHERE expires_at <= ?", now)
        keys = []
        for row in rows:
            # One row at a time: of two replicas sweeping together, one deletes each row and
            # only that one revokes its playground key.
            deleted = await self.db.execute("DELETE FROM console_sessions WHERE id = ?",
                                            row["id"])
            if deleted and row["chat_key_id"] is not None:
                keys.append(row["chat_key_id"])
        return keys

    async def trim(self, keep: int) -> None:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM console_sessions")
        over = int(row["n"]) - keep + 1 if row is not None else 0
        if over > 0:
            await self.db.execute(
                "DELETE FROM console_sessions WHERE id IN (SELECT id FROM console_sessions"
                " ORDER BY created_at LIMIT ?)", over)
