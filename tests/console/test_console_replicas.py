"""The console behind several gateways sharing one database, as replicas behind a plain
Service (PostgreSQL) or `server.workers` processes on one machine (SQLite): a browser signed
in at one is signed in at all, a sign-out anywhere holds everywhere, and a restart keeps
everyone signed in."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_gateway.config import parse_config
from llm_gateway.console.sessions import COOKIE
from llm_gateway.console.signin import CHAT_KEY_NAME
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, SECRET, Admin, gateway_env, keys_config, new_key
from console_support import client, csrf_of, sign_in
from services import run_sync, storage_of

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class Replicas:
    def __init__(self, fake_url: str, storage: dict[str, str], tmp_path: Path) -> None:
        self.fake_url, self.storage, self.tmp_path = fake_url, storage, tmp_path
        self.started: list[GatewayServer] = []

    def start(self, name: str) -> GatewayServer:
        storage = dict(self.storage)
        env = gateway_env()
        if "url" in storage:  # PostgreSQL: pods of their own, the key secret from a Secret
            storage["data_dir"] = str(self.tmp_path / name)
            env["LLM_GATEWAY_KEY_SECRET"] = SECRET
        config = keys_config(self.fake_url, storage["data_dir"], storage=storage)
        server = GatewayServer(parse_config(config, env=env), env=env).start()
        self.started.append(server)
        return server

    def rows(self) -> list[Any]:
        """The console_sessions table as the database holds it."""
        if "url" in self.storage:
            async def fetch() -> list[Any]:
                import asyncpg

                conn = await asyncpg.connect(self.storage["url"])
                try:
                    return [tuple(r) for r in await conn.fetch("SELECT * FROM console_sessions")]
                finally:
                    await conn.close()
            return run_sync(fetch)
        with sqlite3.connect(Path(self.storage["data_dir"]) / "gateway.db") as conn:
            return conn.execute("SELECT * FROM console_sessions").fetchall()


@pytest.fixture(params=["sqlite", "postgresql"])
def replicas(request, fake, tmp_path) -> Iterator[Replicas]:
    with storage_of(request.param, tmp_path) as storage:
        made = Replicas(fake.url, storage, tmp_path)
        try:
            yield made
        finally:
            for server in made.started:
                server.stop()


def at(gw: GatewayServer, signed_in: httpx.Client) -> httpx.Client:
    """A browser at `gw` holding the cookie `signed_in` got elsewhere."""
    browser = client(gw)
    browser.cookies.set(COOKIE, signed_in.cookies.get(COOKIE), path="/ui")
    return browser


def chat_keys(gw: GatewayServer) -> list[dict]:
    keys = Admin(gw)("GET", "/admin/keys").json()["data"]
    return [k for k in keys if k["name"] == CHAT_KEY_NAME]


def test_an_admin_session_works_at_every_replica_and_ends_at_all(replicas):
    a, b = replicas.start("a"), replicas.start("b")
    on_a = sign_in(a, ADMIN_KEY)
    on_b = at(b, on_a)
    assert on_b.get("/ui/keys").status_code == 200
    token = csrf_of(on_a)
    assert csrf_of(on_b) == token  # one session, one CSRF token
    made = on_b.post("/ui/admin/keys", json={"name": "from-b"}, headers={"x-csrf-token": token})
    assert made.status_code == 201, made.text
    # The playground key made at one replica is the one the other uses.
    for browser in (on_a, on_b, on_a):
        answer = browser.post("/ui/v1/chat/completions", json=CHAT,
                              headers={"x-csrf-token": token})
        assert answer.status_code == 200, answer.text
    (chat_key,) = chat_keys(a)
    assert chat_key["status"] == "active"
    # Nothing in the table reads as a key, a token or a cookie.
    text = repr(replicas.rows())
    assert "sk-lgw-" not in text and token not in text
    assert on_a.cookies.get(COOKIE).split(".")[0] not in text
    # Signed out at b: signed out at a at once, and the playground key revoked.
    assert on_b.post("/ui/logout", data={"csrf": token}).status_code == 303
    assert on_a.get("/ui/keys").headers["location"] == "/ui/login"
    assert on_a.get("/ui/api/keys").status_code == 401
    assert Admin(a)("GET", f"/admin/keys/{chat_key['id']}").json()["status"] == "revoked"
    assert replicas.rows() == []


def test_a_key_session_and_the_sign_in_form_cross_replicas(replicas):
    a, b = replicas.start("a"), replicas.start("b")
    key_id, key = new_key(a, name="console-user", team="research")
    # The form from a, posted to b (a load balancer may do that too).
    page = client(a)
    form = page.get("/ui/login")
    token = form.text.split('name="csrf" value="')[1].split('"')[0]
    to_b = at(b, page)
    to_b.cookies.set("lgw_console_login", page.cookies.get("lgw_console_login"), path="/ui")
    answer = to_b.post("/ui/login", data={"csrf": token, "key": key})
    assert answer.status_code == 303, answer.text
    on_a = at(a, to_b)
    me = on_a.get("/ui/api/me").json()
    assert me["kind"] == "key" and key_id in me["who"] and me["team"] == "research"
    chat = on_a.post("/ui/v1/chat/completions", json=CHAT,
                     headers={"x-csrf-token": csrf_of(on_a)})
    assert chat.status_code == 200, chat.text
    # Signed out at a: no longer signed in at b.
    assert on_a.post("/ui/logout", data={"csrf": csrf_of(on_a)}).status_code == 303
    assert at(b, to_b).get("/ui/api/me").status_code == 401


def test_a_restart_keeps_everyone_signed_in(replicas):
    a = replicas.start("a")
    browser = sign_in(a, ADMIN_KEY)
    replicas.started.remove(a)
    a.stop()
    again = replicas.start("a")
    assert at(again, browser).get("/ui/keys").status_code == 200
