"""Admin writes against a database that cannot take them are an OpenAI-shaped 503, never a 500.

SQLite: the database file and its WAL are made immutable (`chattr +i`) while the gateway
runs. Tests run as root, for whom `chmod` stops nothing, and an open connection never rereads
permissions anyway; the immutable flag is what the kernel itself enforces on every write
(EPERM), so the writes really fail. PostgreSQL: a private server made read-only (what a
standby is), then stopped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config
from services import PostgresCluster, run_sync

WRITES = [
    ("POST", "/admin/keys", {"name": "new"}),
    ("POST", "/admin/teams", {"name": "new-team"}),
    ("PATCH", "/admin/keys/{id}", {"name": "renamed"}),
    ("DELETE", "/admin/keys/{id}", None),
    ("POST", "/admin/keys/{id}/rotate", None),
]


def unavailable(reply: httpx.Response) -> dict:
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error" and error["code"] == "database_unavailable", error
    return error


def immutable(paths: list[Path], on: bool) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def gw(fake, tmp_path: Path) -> Iterator[GatewayServer]:
    env = gateway_env()
    with GatewayServer(parse_config(keys_config(fake.url, str(tmp_path)), env=env),
                       env=env) as server:
        yield server


def test_sqlite_made_immutable_while_running(gw, tmp_path: Path):
    api = Admin(gw)
    key_id = api("POST", "/admin/keys", json={"name": "before"}).json()["id"]
    # The database and its WAL; not the shared-memory index, which SQLite maps into memory
    # (a write to an immutable mapping is a SIGBUS, not an error to answer).
    files = [tmp_path / "gateway.db", tmp_path / "gateway.db-wal"]
    if not immutable(files, True):
        immutable(files, False)
        pytest.skip("chattr +i is not possible here (needs root and a filesystem with it)")
    try:
        for method, path, body in WRITES:
            error = unavailable(api(method, path.format(id=key_id), json=body))
            assert "gateway.db" in error["message"]
        listed = api("GET", "/admin/keys")
        assert listed.status_code in (200, 503), listed.text
    finally:
        immutable(files, False)
    # Writable again: the same gateway carries on, and nothing half-done was left behind.
    assert api("PATCH", f"/admin/keys/{key_id}", json={"name": "after"}).status_code == 200
    names = {k["name"] for k in api("GET", "/admin/keys").json()["data"]}
    assert names == {"after"}
    assert api("GET", "/admin/teams/new-team").status_code == 404


def test_postgresql_read_only_then_down(fake, tmp_path: Path):
    cluster = PostgresCluster().start()
    try:
        env = gateway_env()
        config = keys_config(fake.url, str(tmp_path), storage={"url": cluster.url,
                                                               "data_dir": str(tmp_path)})
        with GatewayServer(parse_config(config, env=env), env=env) as server:
            api = Admin(server)
            key_id = api("POST", "/admin/keys", json={"name": "before"}).json()["id"]
            run_sync(lambda: _sql(cluster.url, "ALTER SYSTEM SET default_transaction_read_only"
                                               " = on", "SELECT pg_reload_conf()"))
            for method, path, body in WRITES:
                unavailable(api(method, path.format(id=key_id), json=body))
            cluster.stop()
            for method, path, body in WRITES:
                unavailable(api(method, path.format(id=key_id), json=body))
            unavailable(api("GET", "/admin/keys"))
    finally:
        cluster.destroy()


async def _sql(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()
