"""Revocation wins over a database failure (issue 13, defect 4).

Gateways in keys mode on a real SQLite file; the database is made to fail by closing the
gateway's own connection to it, so every later query raises as a database that has gone away
would ("Cannot operate on a closed database"). The key cache lives `cache_seconds` (0.3 s
here); the tests wait it out with short sleeps, since the gateway runs on the real clock.
The last test drives the authenticator itself, to hold a lookup while a revocation happens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.auth.authenticate import Authenticator
from llm_gateway.config import parse_config
from llm_gateway.errors import AuthenticationFailed
from llm_gateway.storage.connect import connect
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import SECRET, Admin, Clock, gateway_env, keys_config, new_key

CACHE = 0.3  # auth.cache_seconds of every gateway here
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def start(fake: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Start a gateway on the database in tmp_path (several share it, as replicas would)."""
    started: list[GatewayServer] = []

    def make(**auth) -> GatewayServer:
        env = gateway_env()
        config = keys_config(fake.url, str(tmp_path), {"cache_seconds": CACHE, **auth})
        server = GatewayServer(parse_config(config, env=env), env=env).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def chat(server: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(f"{server.url}/chat/completions", json=CHAT, timeout=10,
                      headers={"authorization": f"Bearer {key}"})


def break_database(server: GatewayServer) -> None:
    """Close the gateway's SQLite connection, on the thread that runs its statements."""
    db = server.app.state.db
    db._executor.submit(db._conn.close).result(5)
    with pytest.raises(Exception, match="closed database"):
        db._executor.submit(db._conn.execute, "SELECT 1").result(5)


def after_cache() -> None:
    time.sleep(CACHE + 0.15)


def test_a_key_revoked_here_stays_refused_while_the_database_fails(start):
    gateway = start()
    revoked_id, revoked = new_key(gateway)
    _, other = new_key(gateway)
    assert chat(gateway, revoked).status_code == 200
    assert chat(gateway, other).status_code == 200
    assert Admin(gateway)("DELETE", f"/admin/keys/{revoked_id}").status_code == 200
    assert chat(gateway, revoked).status_code == 401
    break_database(gateway)
    after_cache()
    for _ in range(3):
        reply = chat(gateway, revoked)
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"]["code"] == "invalid_api_key"
        assert "revoked" in reply.json()["error"]["message"]
    # The revocation touched only its own key: one seen a moment ago still works meanwhile.
    assert chat(gateway, other).status_code == 200


def test_disabled_and_rotated_here_stay_refused_while_the_database_fails(start):
    gateway = start()
    admin = Admin(gateway)
    disabled_id, disabled = new_key(gateway)
    rotated_id, rotated = new_key(gateway)
    assert chat(gateway, disabled).status_code == 200
    assert chat(gateway, rotated).status_code == 200
    assert admin("PATCH", f"/admin/keys/{disabled_id}",
                 json={"disabled": True}).status_code == 200
    assert admin("POST", f"/admin/keys/{rotated_id}/rotate").status_code == 200
    break_database(gateway)
    after_cache()
    reply = chat(gateway, disabled)
    assert reply.status_code == 401 and "disabled" in reply.json()["error"]["message"]
    assert chat(gateway, rotated).status_code == 401


def test_a_revocation_seen_from_another_replica_survives_a_database_failure(start):
    here, there = start(), start()  # one SQLite file, two replicas
    key_id, key = new_key(there)
    assert chat(here, key).status_code == 200  # remembered here as active
    assert Admin(there)("DELETE", f"/admin/keys/{key_id}").status_code == 200
    after_cache()
    assert chat(here, key).status_code == 401  # asked the database: revoked
    break_database(here)
    after_cache()
    for _ in range(3):
        reply = chat(here, key)
        assert reply.status_code == 401, reply.text
        assert "revoked" in reply.json()["error"]["message"]


def test_a_known_key_works_through_a_failure_only_for_stale_seconds(start):
    gateway = start(stale_seconds=1.0)
    _, key = new_key(gateway)
    assert chat(gateway, key).status_code == 200
    break_database(gateway)
    after_cache()
    assert chat(gateway, key).status_code == 200  # its last lookup is recent enough
    time.sleep(1.0)
    reply = chat(gateway, key)
    assert reply.status_code == 503, reply.text
    assert "cannot check API keys" in reply.json()["error"]["message"]


class HeldDatabase:
    """The real database; a key lookup can be held after it has read its row (`hold`), and
    the database can be made to fail (`down`)."""

    def __init__(self, db) -> None:
        self.db = db
        self.hold: asyncio.Event | None = None
        self.read = asyncio.Event()
        self.down = False

    def __getattr__(self, name):
        return getattr(self.db, name)

    async def fetchone(self, sql, *args):
        if self.down:
            raise ConnectionError("database is down")
        row = await self.db.fetchone(sql, *args)
        if self.hold is not None and "key_hash" in sql:
            self.read.set()
            await self.hold.wait()
        return row


async def test_a_lookup_in_flight_during_a_revocation_is_not_remembered(tmp_path):
    config = parse_config({"auth": {"mode": "keys", "cache_seconds": 10},
                           "storage": {"data_dir": str(tmp_path)}}, env={})
    ticks = Clock(0.0)
    auth = Authenticator(config, {"LLM_GATEWAY_KEY_SECRET": SECRET}, monotonic=ticks)
    db = HeldDatabase(await connect(None, config))
    await auth.start(db)
    try:
        record, key = await auth.keys.create({"name": "a"})
        db.hold = asyncio.Event()
        lookup = asyncio.ensure_future(auth.authenticate(scope(key)))
        await db.read.wait()  # it has read the row while the key was active
        auth.key_changed(await auth.keys.revoke(record.id))
        db.hold.set()
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await lookup  # read again: the revocation happened while it ran
        db.hold, db.down = None, True
        ticks.now += 60
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await auth.authenticate(scope(key))
    finally:
        await auth.aclose()
        await db.db.aclose()


def scope(key: str) -> dict:
    return {"headers": [(b"authorization", f"Bearer {key}".encode())]}
