"""Helpers for the console's tests: signing in over plain HTTP, a page's CSRF token.

Not in conftest.py: see tests/gateway_support.py on the module name "conftest".
"""

from __future__ import annotations

import re

import httpx

from llm_gateway.testing.gateway import GatewayServer

_FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def client(gw: GatewayServer) -> httpx.Client:
    return httpx.Client(base_url=gw.base, timeout=30, follow_redirects=False)


def sign_in(gw: GatewayServer, key: str) -> httpx.Client:
    """A client signed in with `key` (asserts that it worked)."""
    browser = client(gw)
    answer = try_sign_in(browser, key)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/playground"
    return browser


def try_sign_in(browser: httpx.Client, key: str) -> httpx.Response:
    page = browser.get("/ui/login")
    token = _FORM_TOKEN.search(page.text)
    assert token is not None, page.text
    return browser.post("/ui/login", data={"csrf": token.group(1), "key": key})


def csrf_of(browser: httpx.Client, page: str = "/ui/usage") -> str:
    answer = browser.get(page)
    assert answer.status_code == 200, answer.text
    token = _META_TOKEN.search(answer.text)
    assert token is not None
    return token.group(1)


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def asgi_get(app, path: str, client_host: str, scheme: str = "http") -> tuple[int, dict]:
    """GET `path` straight into the app's ASGI callable, as if from `client_host` over
    `scheme` (what uvicorn reports behind a trusted proxy): (status, headers). Only for answers
    that touch no database (those belong to the server's own event loop)."""
    import asyncio

    seen: list[dict] = []
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [(b"host", b"gw.example")], "scheme": scheme,
             "server": ("gw.example", 443 if scheme == "https" else 80),
             "client": (client_host, 5000), "http_version": "1.1", "root_path": "",
             "asgi": {"version": "3.0"}}

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        seen.append(message)

    asyncio.run(app(scope, receive, send))
    headers: dict[str, str] = {}
    for key, value in seen[0]["headers"]:
        headers.setdefault(key.decode(), value.decode())
    return seen[0]["status"], headers
