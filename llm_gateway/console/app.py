"""The console's routes: pages, sign-in, its JSON reads, and its doors to /v1 and /admin.

    /                    -> /ui/ -> /ui/playground
    /ui/login, /ui/logout          sign in and out (forms with CSRF tokens)
    /ui/{playground,usage,keys,status}
    /ui/static/<file>              the page's own ES modules and CSS
    /ui/api/...                    reads (data.py, status.py), scoped to the session
    /ui/v1/models, /ui/v1/chat/completions
                                   the playground: re-sent to /v1/... with the session's key
    /ui/admin/...                  an admin session's writes: re-sent to /admin/... with the
                                   admin key; the console itself writes nothing
Errors raised here reach the edge, which shapes them like any other (OpenAI's error body).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.api.state import State
from llm_gateway.console import data, status
from llm_gateway.console.guard import (
    SAFE_METHODS,
    check_csrf,
    cookie_header,
    local_allowed,
    require,
    session_of,
)
from llm_gateway.console.render import Renderer, redirect
from llm_gateway.console.session import Session
from llm_gateway.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_TOKEN_SECONDS,
    SessionStore,
    console_secret,
)
from llm_gateway.console.signin import (
    chat_credential,
    key_principal,
    open_session,
    revoke_chat_key,
)
from llm_gateway.console.subrequest import forward
from llm_gateway.echo import clip
from llm_gateway.errors import (
    AuthenticationFailed,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
)
from llm_gateway.web.body import read_body
from llm_gateway.web.responses import BytesResponse

log = logging.getLogger(__name__)

FORM_LIMIT = 16 * 1024
PAGES = {"playground": "Playground", "usage": "Usage", "keys": "Keys and teams",
         "status": "Status"}
OPEN_PAGES = ("playground", "usage")  # what a local session (auth.mode none) may see
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]

Reader = Callable[[Request, Session], Awaitable[Any]]


class Console:
    def __init__(self, state: State, app: ASGIApp) -> None:
        self.state = state
        self.app = app  # the whole gateway (the edge): where sub-requests go
        lifetime = state.config.console.session_hours * 3600
        self.sessions = SessionStore(console_secret(state.config, state.auth.env, None),
                                     lifetime)
        self.render = Renderer()
        self.readers: dict[str, Reader] = {
            "usage": lambda r, s: data.usage_json(r, state, s),
            "keys": lambda r, s: _listed(data.keys_json(state, s)),
            "teams": lambda r, s: _listed(data.teams_json(state, s)),
            "budgets": lambda r, s: _listed(data.budgets_json(state, s)),
            "status": self._status,
            "price": lambda r, s: _done(data.price(r, state)),
            "me": lambda r, s: _done(self._me(s)),
        }

    async def start(self) -> None:
        """Keep sessions in the database, where every process and replica finds them (once
        the state has started: it opens the database)."""
        state = self.state
        if state.db is not None:
            secret = console_secret(state.config, state.auth.env, state.auth.hasher)
            await self.sessions.start(state.db, secret)
        elif state.config.server.workers > 1:
            log.warning("console: with no database (storage.url) sessions live in the "
                        "process that signed in; with server.workers > 1 a browser may be "
                        "asked to sign in again (see docs/console.md)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._route(request, send, scope["path"], scope["method"])
        if response is not None:
            await response(scope, receive, send)

    async def _route(self, request: Request, send: Send, path: str, method: str
                     ) -> BytesResponse | None:
        if path in ("/", "/ui", "/ui/"):
            _only(method, "GET", "HEAD")
            return redirect("/ui/playground" if path == "/ui/" else "/ui/", status=307)
        rest = path[len("/ui/"):]
        if rest.startswith("static/"):  # (assets and sign-in need no session: no lookup)
            _only(method, "GET", "HEAD")
            return self.render.asset(rest[len("static/"):])
        if rest == "login":
            return await self._login(request, method)
        session = await self._session(request)
        if rest == "logout":
            _only(method, "POST")
            return await self._logout(request, session)
        if rest in PAGES:
            _only(method, "GET", "HEAD")
            return await self._page(request, rest, session)
        if rest.startswith("api/"):
            _only(method, "GET", "HEAD")
            return await self._read(request, rest[len("api/"):], session)
        if rest in ("v1/models", "v1/chat/completions"):
            await self._chat(request, send, "/" + rest, await self._local(request, session))
            return None
        if rest.startswith("admin/"):
            await self._admin(request, send, "/" + rest, session)
            return None
        raise NotFound(f"Unknown path: {clip(method)} {clip(path)}.")

    # --- sessions ---

    async def _session(self, request: Request) -> Session | None:
        """The request's session; a gateway key's only while that key still works (revoked,
        disabled or expired: signed out, as its calls to /v1 would be refused)."""
        session = await session_of(request, self.sessions)
        if session is None or session.kind != "key" or session.key is None:
            return session
        try:
            await key_principal(self.state, session.key)
        except AuthenticationFailed:
            await self.sessions.drop(request.cookies.get(COOKIE))
            return None
        return session

    async def _local(self, request: Request, session: Session | None, keep: bool = False
                     ) -> Session | None:
        """The session, or a local one (auth.mode none, a browser on this machine): kept and
        set as a cookie for a page, made for this request alone otherwise (it has no CSRF
        token the browser knows, so it can only read)."""
        if session is not None or not local_allowed(request, self.state.auth.mode):
            return session
        if not keep:
            return Session("local", self.sessions.clock() + 60)
        cookie, session = await self.sessions.create("local")
        request.scope["console_cookie"] = cookie
        return session

    def _with_cookie(self, request: Request, headers: list[tuple[str, str]]
                     ) -> list[tuple[str, str]]:
        cookie = request.scope.get("console_cookie")
        if cookie is not None:
            headers.append(cookie_header(COOKIE, cookie, request, self._max_age()))
        return headers

    def _max_age(self) -> int:
        return int(self.sessions.lifetime)

    async def _login(self, request: Request, method: str) -> BytesResponse:
        if method in SAFE_METHODS:
            return self._login_page(request)
        _only(method, "POST")
        form = await self._form(request)
        if not self.sessions.login_token_ok(form.get("csrf"),
                                            request.cookies.get(LOGIN_COOKIE)):
            return self._login_page(request, "The sign-in form expired: try again.", 403)
        try:
            cookie, _ = await open_session(self.state, self.sessions, form.get("key", ""))
        except GatewayError as exc:
            return self._login_page(request, exc.message, exc.status)
        await self._sweep(request)
        return redirect("/ui/playground", [
            cookie_header(COOKIE, cookie, request, self._max_age()),
            cookie_header(LOGIN_COOKIE, "", request, 0)])

    def _login_page(self, request: Request, error: str | None = None,
                    status: int = 200) -> BytesResponse:
        token = self.sessions.login_token()
        return self.render.page(
            "login.html", status, [cookie_header(LOGIN_COOKIE, token, request,
                                                 LOGIN_TOKEN_SECONDS)],
            csrf=token, error=error, mode=self.state.auth.mode, session=None, page="login",
            admin_api=self.state.auth.admin_key is not None,
            local=local_allowed(request, self.state.auth.mode))

    async def _logout(self, request: Request, session: Session | None) -> BytesResponse:
        if session is not None:
            check_csrf(request, session, (await self._form(request)).get("csrf", ""))
            await self.sessions.drop(request.cookies.get(COOKIE))
            await revoke_chat_key(self.app, request, self.state, session.chat_key_id)
        return redirect("/ui/login", [cookie_header(COOKIE, "", request, 0)])

    async def _sweep(self, request: Request) -> None:
        for key_id in await self.sessions.expired():
            await revoke_chat_key(self.app, request, self.state, key_id)

    async def _form(self, request: Request) -> dict[str, str]:
        raw = await read_body(request.scope, request.receive, FORM_LIMIT)
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}

    # --- pages and reads ---

    async def _page(self, request: Request, name: str, session: Session | None
                    ) -> BytesResponse:
        if name in OPEN_PAGES:
            session = await self._local(request, session, keep=True)
        if session is None or (session.kind == "local" and name not in OPEN_PAGES):
            return redirect("/ui/login")
        pages = {k: v for k, v in PAGES.items()
                 if session.kind != "local" or k in OPEN_PAGES}
        return self.render.page(
            f"{name}.html", headers=self._with_cookie(request, []), page=name, pages=pages,
            session=session, who=session.who(), csrf=session.csrf,
            read_only=not session.admin)

    async def _read(self, request: Request, name: str, session: Session | None
                    ) -> BytesResponse:
        if name == "usage.csv":
            found = require(await self._local(request, session))
            text = await data.usage_csv(request, self.state, found)
            return BytesResponse(200, text.encode(), [
                (b"content-type", b"text/csv; charset=utf-8"), (b"cache-control", b"no-store"),
                (b"content-disposition", b'attachment; filename="usage.csv"')])
        reader = self.readers.get(name)
        if reader is None:
            raise NotFound(f"Unknown console data: {clip(name)}.")
        found = require(await self._local(request, session)
                        if name in ("usage", "price", "me") else session)
        body = orjson.dumps(await reader(request, found))
        return BytesResponse(200, body, [*_JSON])

    async def _status(self, request: Request, session: Session) -> Any:
        if session.kind == "local":
            raise PermissionDenied("Sign in to see the gateway's status.",
                                   code="console_read_only")
        return await status.status_json(self.state)

    def _me(self, session: Session) -> dict[str, Any]:
        return {"kind": session.kind, "who": session.who(), "team": session.team,
                "admin": session.admin, "expires_at": int(session.expires_at)}

    # --- doors to the gateway's own API ---

    async def _chat(self, request: Request, send: Send, path: str, session: Session | None
                    ) -> None:
        found = require(session)
        if request.method not in SAFE_METHODS:
            _only(request.method, "POST")
            check_csrf(request, found)
        else:
            _only(request.method, "GET", "HEAD")
        credential = await chat_credential(self.app, request, self.state, self.sessions,
                                           found)
        await forward(self.app, request.scope, request.receive, send, path,
                      credential)

    async def _admin(self, request: Request, send: Send, path: str, session: Session | None
                     ) -> None:
        found = require(session, admin=True)
        _only(request.method, "POST", "PATCH", "DELETE")
        check_csrf(request, found)
        await forward(self.app, request.scope, request.receive, send, path,
                      self.state.auth.admin_key)


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowed(f"Method {clip(method)} is not allowed here.",
                               headers={"allow": ", ".join(allowed)})


async def _listed(items: Awaitable[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"object": "list", "data": await items}


async def _done(value: Any) -> Any:
    return value
