"""A console session: who signed in, until when, and the credential its requests carry."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["admin", "key", "local"]


@dataclass(eq=False)
class Session:
    kind: Kind  # admin: the admin key; key: a gateway key (its team); local: auth.mode none
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str | None = field(default=None, repr=False)  # the gateway key a "key" session uses
    key_id: str | None = None
    team: str | None = None
    # An admin session's playground key (made through POST /admin/keys, revoked at logout).
    chat_key: str | None = field(default=None, repr=False)
    chat_key_id: str | None = None
    sid: str = field(default="", repr=False)  # its id in the store (the cookie's first half)

    @property
    def admin(self) -> bool:
        return self.kind == "admin"

    def who(self) -> str:
        if self.kind == "admin":
            return "admin"
        if self.kind == "local":
            return "local (auth.mode none)"
        return f"key {self.key_id}" + (f", team {self.team}" if self.team else "")

    def fields(self) -> dict[str, Any]:
        """What is stored (the id is what names it, not part of it)."""
        stored = asdict(self)
        del stored["sid"]
        return stored

    @classmethod
    def from_fields(cls, stored: dict[str, Any]) -> Session:
        """Raises TypeError or ValueError for what no version of `fields` made."""
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        session = cls(**known)
        if session.kind not in ("admin", "key", "local") or \
                not isinstance(session.expires_at, (int, float)):
            raise ValueError("not a session")
        return session
