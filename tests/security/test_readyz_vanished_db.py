"""A SQLite database deleted or replaced while the gateway runs is noticed: /readyz answers 503
saying so, admin writes are 503s, the ledger writer logs an error and keeps records in its
spool instead of writing them into a file nobody can see.

And the line docs/metrics.md draws for /readyz: a database that is only unavailable (here:
made immutable) leaves the replica ready, the ledger check saying records queue on disk;
records that cannot even be spooled make it unready.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config, new_key


@pytest.fixture
def gw(fake, tmp_path: Path) -> Iterator[GatewayServer]:
    env = gateway_env()
    with GatewayServer(parse_config(keys_config(fake.url, str(tmp_path)), env=env),
                       env=env) as server:
        yield server


def readyz(gw: GatewayServer) -> tuple[int, dict]:
    reply = httpx.get(gw.base + "/readyz", timeout=10)
    return reply.status_code, reply.json()["checks"]


def chat(gw: GatewayServer, key: str) -> str:
    client = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return reply.headers["x-request-id"]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def spooled(directory: Path, text: str) -> bool:
    return any(text in p.read_text() for p in directory.glob("*.jsonl"))


def test_a_deleted_database_file_is_noticed(gw, tmp_path: Path, caplog):
    caplog.set_level(logging.ERROR, logger="llm_gateway.ledger")
    _, key = new_key(gw)
    chat(gw, key)  # the key is cached now, as it would be on a busy replica
    status, checks = readyz(gw)
    assert status == 200 and checks.get("database") == "ok", checks

    (tmp_path / "gateway.db").unlink()
    status, checks = readyz(gw)
    assert status == 503 and "deleted" in checks["database"], checks

    reply = Admin(gw)("POST", "/admin/keys", json={"name": "lost"})
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "database_lost"
    assert "deleted" in reply.json()["error"]["message"]

    # Requests are still served; their records wait in the spool, not in the lost file.
    request_id = chat(gw, key)
    assert eventually(lambda: any("deleted" in r.getMessage() for r in caplog.records))
    assert spooled(tmp_path / "ledger-spool", request_id)
    ledger = gw.app.state.accountant.ledger
    assert ledger.pending >= 1
    # The writer finds the file gone on its next flush (a busy machine: not at once).
    assert eventually(lambda: "deleted" in readyz(gw)[1]["ledger"])


def test_a_replaced_database_file_is_noticed(gw, tmp_path: Path):
    path = tmp_path / "gateway.db"
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    other.replace(path)  # a new file under the same name: another inode
    status, checks = readyz(gw)
    assert status == 503 and "replaced" in checks["database"], checks


def _chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True
                          ).returncode == 0


def test_an_unavailable_database_leaves_the_replica_ready(gw, tmp_path: Path):
    _, key = new_key(gw)
    files = [tmp_path / "gateway.db", tmp_path / "gateway.db-wal"]
    if not _chattr("+i", *files):
        _chattr("-i", *files)
        pytest.skip("chattr +i is not possible here (needs root and a filesystem with it)")
    try:
        request_id = chat(gw, key)
        ledger = gw.app.state.accountant.ledger
        assert eventually(lambda: ledger.writer.failing_since is not None)
        status, checks = readyz(gw)
        assert status == 200, checks  # records queue on disk; draining would not help
        assert checks["ledger"].startswith("database unavailable"), checks
        assert spooled(tmp_path / "ledger-spool", request_id)
    finally:
        _chattr("-i", *files)
    assert eventually(lambda: readyz(gw)[1]["ledger"] == "ok", timeout=10)


def test_records_that_cannot_be_spooled_make_it_unready(gw, tmp_path: Path):
    _, key = new_key(gw)
    ledger = gw.app.state.accountant.ledger
    segment = Path(ledger.spool._path)  # the segment being appended to
    if not _chattr("+i", segment):
        pytest.skip("chattr +i is not possible here (needs root and a filesystem with it)")
    try:
        chat(gw, key)
        assert eventually(lambda: ledger.dropped >= 1)
        status, checks = readyz(gw)
        assert status == 503 and "cannot be spooled" in checks["ledger"], checks
    finally:
        _chattr("-i", segment)
    chat(gw, key)
    assert readyz(gw)[0] == 200
