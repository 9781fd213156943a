"""Console sessions, named by a signed cookie, kept where every replica finds them.

The cookie carries only a random session id and its HMAC (never a key). The session itself
is a row in the gateway's database once `start` gives it one (session_rows.py: sealed under a
key only the cookie holds), so any process or replica serves any browser and a sign-out holds
everywhere at once; without a database it lives in this process's memory. Sessions expire
after `console.session_hours`; logout forgets one at once.

The HMAC's secret must be the same in every process: `console.secret_env` when set, else one
derived from the key-hash secret (`auth.hash_secret_env` or its file), which every replica
shares already. Without a database a random one per process does (nothing else could read
its sessions anyway).

Sign-in itself is protected by a stateless token (a nonce, a time and their HMAC) set both as
a cookie and in the form, so that a page elsewhere cannot sign a browser in as someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from llm_gateway.auth.secret import LazyHasher
from llm_gateway.config import Config
from llm_gateway.console.session import Kind, Session
from llm_gateway.console.session_rows import CONSOLE_STEPS, DatabaseSessionRows, SessionRows

COOKIE = "lgw_console"
LOGIN_COOKIE = "lgw_console_login"
COOKIE_PATH = "/ui"
LOGIN_TOKEN_SECONDS = 3600
MAX_SESSIONS = 10_000  # beyond this, the oldest sign-ins are forgotten first
COOKIE_PURPOSE = "console-cookies"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def console_secret(config: Config, env: Mapping[str, str], hasher: LazyHasher | None
                   ) -> bytes:
    """The configured secret; else one derived from the key-hash secret (`hasher`, given when
    sessions are shared); else 32 random bytes for this process."""
    given = env.get(config.console.secret_env)
    if given:
        return given.encode()
    return hasher.derive(COOKIE_PURPOSE) if hasher is not None else secrets.token_bytes(32)


class SessionStore:
    def __init__(self, secret: bytes, lifetime: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.lifetime = lifetime
        self.clock = clock
        self.rows = SessionRows()
        self.shared = False

    async def start(self, db: Any, secret: bytes) -> None:
        """Keep sessions in `db` (a storage.Database), signed with `secret`, from now on."""
        await db.migrate("console", CONSOLE_STEPS)
        self.rows = DatabaseSessionRows(db)
        self._secret = secret
        self.shared = True

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._secret, text.encode(), hashlib.sha256).digest())

    async def create(self, kind: Kind, **fields: str | None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        now = self.clock()
        await self.rows.trim(MAX_SESSIONS)
        sid = secrets.token_urlsafe(32)
        session = Session(kind, now + self.lifetime, sid=sid, **fields)  # type: ignore[arg-type]
        await self.rows.put(sid, session, now)
        return f"{sid}.{self._sign(sid)}", session

    async def save(self, session: Session) -> bool:
        """Store a change to `session` (its playground key); False when it was signed out
        meanwhile (elsewhere, perhaps): then it stays signed out."""
        return await self.rows.update(session.sid, session)

    async def get(self, cookie: str | None) -> Session | None:
        sid = self._verified(cookie)
        if sid is None:
            return None
        session = await self.rows.get(sid)
        if session is None or self.clock() >= session.expires_at:
            return None
        session.sid = sid
        return session

    async def drop(self, cookie: str | None) -> None:
        sid = self._verified(cookie)
        if sid is not None:
            await self.rows.delete(sid)

    async def expired(self) -> list[str]:
        """Remove the sessions past their time; the ids of their playground keys (to revoke).
        """
        return await self.rows.sweep(self.clock())

    def _verified(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        sid, _, sig = cookie.partition(".")
        # (bytes: compare_digest refuses str past ASCII, and a cookie may hold anything)
        return sid if hmac.compare_digest(sig.encode(), self._sign(sid).encode()) else None

    # --- sign-in form tokens (stateless) ---

    def login_token(self) -> str:
        text = f"{secrets.token_urlsafe(16)}.{int(self.clock())}"
        return f"{text}.{self._sign('login:' + text)}"

    def login_token_ok(self, form_token: str | None, cookie_token: str | None) -> bool:
        if not form_token or not cookie_token or not hmac.compare_digest(
                form_token.encode(), cookie_token.encode()):
            return False
        text, _, sig = form_token.rpartition(".")
        if not hmac.compare_digest(sig.encode(), self._sign("login:" + text).encode()):
            return False
        issued = text.rpartition(".")[2]
        return issued.isdigit() and self.clock() - int(issued) < LOGIN_TOKEN_SECONDS
