"""Console sessions: held in this process's memory, named by a signed cookie.

The cookie carries only a random session id and its HMAC (never a key): the credential a
session acts with stays here, so a stolen database or log holds nothing that signs anyone in.
Sessions expire after `console.session_hours`; logout forgets one at once. Several processes
(replicas, `server.workers` > 1) each hold their own: a cookie made by one is unknown to the
others, so put sticky sessions in front of the console, or expect to sign in again.

Sign-in itself is protected by a stateless token (a nonce, a time and their HMAC) set both as
a cookie and in the form, so that a page elsewhere cannot sign a browser in as someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from llm_gateway.config import Config

COOKIE = "lgw_console"
LOGIN_COOKIE = "lgw_console_login"
COOKIE_PATH = "/ui"
LOGIN_TOKEN_SECONDS = 3600
MAX_SESSIONS = 10_000  # beyond this, the oldest sign-ins are forgotten first

Kind = Literal["admin", "key", "local"]


@dataclass(eq=False)
class Session:
    kind: Kind  # admin: the admin key; key: a gateway key (its team); local: auth.mode none
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str | None = None  # the gateway key a "key" session chats with (memory only)
    key_id: str | None = None
    team: str | None = None
    # An admin session's playground key (made through POST /admin/keys, revoked at logout).
    chat_key: str | None = None
    chat_key_id: str | None = None

    @property
    def admin(self) -> bool:
        return self.kind == "admin"

    def who(self) -> str:
        if self.kind == "admin":
            return "admin"
        if self.kind == "local":
            return "local (auth.mode none)"
        return f"key {self.key_id}" + (f", team {self.team}" if self.team else "")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def console_secret(config: Config, env: Mapping[str, str]) -> bytes:
    """The configured secret, else 32 random bytes for this process (see the docstring)."""
    given = env.get(config.console.secret_env)
    return given.encode() if given else secrets.token_bytes(32)


class SessionStore:
    def __init__(self, secret: bytes, lifetime: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._secret, text.encode(), hashlib.sha256).digest())

    def create(self, kind: Kind, **fields: str | None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        self._sweep()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(kind, self.clock() + self.lifetime, **fields)  # type: ignore[arg-type]
        self._sessions[sid] = session
        return f"{sid}.{self._sign(sid)}", session

    def get(self, cookie: str | None) -> Session | None:
        sid = self._verified(cookie)
        session = self._sessions.get(sid) if sid is not None else None
        if session is None or self.clock() >= session.expires_at:
            return None
        return session

    def drop(self, cookie: str | None) -> Session | None:
        sid = self._verified(cookie)
        return self._sessions.pop(sid, None) if sid is not None else None

    def expired(self) -> list[Session]:
        """Remove and return the sessions past their time (their chat keys get revoked)."""
        return self._sweep()

    def _verified(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        sid, _, sig = cookie.partition(".")
        return sid if hmac.compare_digest(sig, self._sign(sid)) else None

    def _sweep(self) -> list[Session]:
        now = self.clock()
        gone = [sid for sid, s in self._sessions.items() if now >= s.expires_at]
        return [self._sessions.pop(sid) for sid in gone]

    # --- sign-in form tokens (stateless) ---

    def login_token(self) -> str:
        text = f"{secrets.token_urlsafe(16)}.{int(self.clock())}"
        return f"{text}.{self._sign('login:' + text)}"

    def login_token_ok(self, form_token: str | None, cookie_token: str | None) -> bool:
        if not form_token or not cookie_token or not hmac.compare_digest(form_token,
                                                                          cookie_token):
            return False
        text, _, sig = form_token.rpartition(".")
        if not hmac.compare_digest(sig, self._sign("login:" + text)):
            return False
        issued = text.rpartition(".")[2]
        return issued.isdigit() and self.clock() - int(issued) < LOGIN_TOKEN_SECONDS
