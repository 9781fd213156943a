"""Signing in and out: which key opened a session, and the playground key of an admin.

The admin key opens an admin session. With `auth.mode: keys`, a gateway key opens a session
confined to its team, checked by the gateway's own authenticator (a disabled, expired or
revoked key is refused as it would be at /v1). Any other key is refused without saying why.

An admin key is not a gateway key, so an admin's playground chats with a key of its own: made
at the first chat through POST /admin/keys (named `console-admin`, no team, expiring with the
session), kept in the session (sealed, see session_rows.py), revoked through DELETE
/admin/keys/{id} at logout or once the session expires. Two replicas that make one for the
same session at once both succeed; the key stored last is used and the other expires unused
with the session. Its requests are in the ledger like any key's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from starlette.requests import Request
from starlette.types import ASGIApp

from llm_gateway.api.state import State
from llm_gateway.console.session import Session
from llm_gateway.console.sessions import SessionStore
from llm_gateway.console.subrequest import call
from llm_gateway.errors import AuthenticationFailed, GatewayError, PermissionDenied
from llm_gateway.principal import Principal

log = logging.getLogger(__name__)

CHAT_KEY_NAME = "console-admin"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(a.encode()).digest(),
                               hashlib.sha256(b.encode()).digest())


async def open_session(state: State, sessions: SessionStore, key: str
                       ) -> tuple[str, Session]:
    """A session for this key, or AuthenticationFailed (401)."""
    admin_key = state.auth.admin_key
    if admin_key is not None and _same(key, admin_key):
        return await sessions.create("admin")
    if state.auth.mode == "keys" and key:
        try:
            principal = await key_principal(state, key)
        except GatewayError as exc:
            raise AuthenticationFailed("That key cannot sign in: " + exc.message) from None
        return await sessions.create("key", key=key, key_id=principal.key_id,
                                     team=principal.team)
    raise AuthenticationFailed("That key cannot sign in here (the admin key, or a gateway key "
                               "when auth.mode is keys).")


async def key_principal(state: State, key: str) -> Principal:
    """Who a gateway key is, by the gateway's own authenticator (401 when it cannot call)."""
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]}
    return await state.auth.authenticate(scope)


async def chat_credential(app: ASGIApp, request: Request, state: State,
                          sessions: SessionStore, session: Session) -> str | None:
    """The key the playground's requests carry for this session (None: no key is needed)."""
    if session.kind == "key":
        return session.key
    if state.auth.mode == "none":
        return None
    if state.auth.mode != "keys":
        raise PermissionDenied("The playground needs auth.mode keys or none (in passthrough "
                               "mode the upstream judges each caller's own key).",
                               code="playground_unavailable")
    if session.chat_key is None:
        status, body = await call(app, request.scope, "POST", "/admin/keys",
                                  state.auth.admin_key,
                                  {"name": CHAT_KEY_NAME, "expires_at": int(session.expires_at)})
        if status != 201 or not isinstance(body, dict):
            message = (body or {}).get("error", {}).get("message") if isinstance(body, dict) \
                else None
            raise PermissionDenied(f"Could not make a playground key: {message or status}.",
                                   code="playground_unavailable")
        session.chat_key, session.chat_key_id = body["key"], body["id"]
        if not await sessions.save(session):  # signed out while the key was made
            await revoke_chat_key(app, request, state, session.chat_key_id)
            raise AuthenticationFailed("Sign in to the console first.")
    return session.chat_key


async def revoke_chat_key(app: ASGIApp, request: Request, state: State, key_id: str | None
                          ) -> None:
    """Revoke a session's playground key through the admin API (None: it had none)."""
    if key_id is None:
        return
    status, _ = await call(app, request.scope, "DELETE", f"/admin/keys/{key_id}",
                           state.auth.admin_key)
    if status != 200:
        log.warning("console: could not revoke playground key %s (status %s); it expires "
                    "with its session", key_id, status)
