"""Who the console is talking to, and what they may do.

- A signed-in session (admin key or gateway key), or with `auth.mode: none` a "local" one made
  on the spot for a browser on this machine (the client address is loopback): playground and
  read-only usage, nothing else.
- Every state-changing request carries the session's CSRF token (`X-CSRF-Token`, or a
  form's `csrf` field) and, when the browser names one, an `Origin` of this very host.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie

from starlette.requests import Request

from llm_gateway.console.session import Session
from llm_gateway.console.sessions import COOKIE, COOKIE_PATH, SessionStore
from llm_gateway.errors import AuthenticationFailed, PermissionDenied

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")


def is_loopback(request: Request) -> bool:
    client = request.scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def cookie_header(name: str, value: str, request: Request, max_age: int,
                  path: str = COOKIE_PATH) -> tuple[str, str]:
    """A Set-Cookie: HttpOnly, SameSite=Strict, and Secure when the request came over https."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["path"] = path
    morsel["max-age"] = max_age
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if request.url.scheme == "https":
        morsel["secure"] = True
    return "set-cookie", morsel.OutputString()


async def session_of(request: Request, sessions: SessionStore) -> Session | None:
    return await sessions.get(request.cookies.get(COOKIE))


def local_allowed(request: Request, mode: str) -> bool:
    """auth.mode none: a browser on this machine needs no sign-in for the open pages."""
    return mode == "none" and is_loopback(request)


def check_csrf(request: Request, session: Session, form_token: str | None = None) -> None:
    """Refuse a state-changing request without this session's token (403)."""
    given = form_token if form_token is not None else request.headers.get(CSRF_HEADER)
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise PermissionDenied("Missing or wrong CSRF token: reload the page.",
                               code="csrf_failed")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise PermissionDenied("This request came from another site.", code="csrf_failed")


def require(session: Session | None, *, admin: bool = False) -> Session:
    """The session, if it may use an endpoint (admin: the admin-only writes)."""
    if session is None:
        raise AuthenticationFailed("Sign in to the console first.")
    if admin and not session.admin:
        raise PermissionDenied("Only an admin-key session may change keys and teams.",
                               code="console_read_only")
    return session
