"""No usage record lost: a gateway killed with SIGKILL under load, and the ledger's PostgreSQL
stopped and restarted mid-load. Real processes, real servers, the openai SDK as the client."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.record import TABLE
from llm_gateway.accounting.spool import SEGMENT
from llm_gateway.config import parse_config
from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.storage.connect import connect
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY
from ledger_support import make_record
from services import PostgresCluster, free_port, fresh_postgres_database

pytestmark = pytest.mark.slow
DATA_DIR_VAR = "LLM_GATEWAY__STORAGE__DATA_DIR"  # the test session's override (conftest)


@pytest.fixture(scope="module")
def slow_fake() -> Iterator[FakeUpstream]:
    # Chunks a few ms apart: streams are still in flight when the gateway is killed.
    with FakeUpstream(api_key=UPSTREAM_KEY, chunk_delay=0.004, record_requests=False) as fake:
        yield fake


def config_for(fake: FakeUpstream, data_dir: Path, url: str | None, **accounting) -> dict:
    return {
        "server": {"log_level": "warning"},
        "upstreams": {"openai": {"base_url": fake.url, "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                                 "retries": {"attempts": 1}}},
        "models": [{"name": "gpt-*", "backend": "openai"}],
        "storage": {"data_dir": str(data_dir), "url": url},
        "accounting": {"prices": {"gpt-4o-mini": {"input": 1.0, "output": 2.0}}, **accounting},
    }


class Load:
    """Clients sending chat completions, half of them streamed, each with its own request id;
    `completed` holds the ids whose client got the whole answer."""

    def __init__(self, base_url: str, concurrency: int = 12) -> None:
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-any", max_retries=0,
                                         timeout=20)
        self.concurrency = concurrency
        self.completed: list[str] = []
        self.failed = 0
        self.stop = False
        self._n = 0
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def _worker(self) -> None:
        while not self.stop:
            self._n += 1
            rid = f"dur-{os.getpid()}-{time.monotonic_ns()}-{self._n}"
            stream = self._n % 2 == 0
            try:
                await self._one(rid, stream)
            except (openai.APIError, httpx.HTTPError):
                self.failed += 1
                await asyncio.sleep(0.01)
                continue
            self.completed.append(rid)

    async def _one(self, rid: str, stream: bool) -> None:
        messages = [{"role": "user", "content": f"count to ten, {rid}"}]
        headers = {"x-request-id": rid}
        if not stream:
            answer = await self.client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, extra_headers=headers)
            assert answer.choices[0].message.content
            return
        chunks = await self.client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, extra_headers=headers)
        finished = False
        async for chunk in chunks:
            assert chunk.choices, "a usage-only chunk reached a client that did not ask"
            finished = finished or chunk.choices[0].finish_reason is not None
        assert finished

    async def until(self, count: int, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while len(self.completed) < count:
                await asyncio.sleep(0.02)

    async def finish(self) -> None:
        self.stop = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()


def _counts_sqlite(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute(f"SELECT request_id, COUNT(*) FROM {TABLE} GROUP BY request_id"))


async def _counts_postgres(url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"SELECT request_id, COUNT(*) AS n FROM {TABLE}"
                                " GROUP BY request_id")
    finally:
        await conn.close()
    return {r["request_id"]: r["n"] for r in rows}


def assert_exactly_once(counts: dict[str, int], completed: list[str]) -> None:
    missing = [rid for rid in completed if rid not in counts]
    assert not missing, f"{len(missing)} of {len(completed)} completed requests lost: {missing[:5]}"
    doubled = {rid: n for rid, n in counts.items() if n != 1}
    assert not doubled, f"records written more than once: {doubled}"


class GatewayProcess:
    """`llm-gateway serve` as a child process."""

    def __init__(self, config_file: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != DATA_DIR_VAR}
        env["LGW_TEST_UPSTREAM_KEY"] = UPSTREAM_KEY
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "serve", "--config", str(config_file),
             "--host", "127.0.0.1", "--port", str(port)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("gateway did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_sigkill_under_load_loses_no_completed_request(
        dialect: str, slow_fake: FakeUpstream, tmp_path: Path) -> None:
    with fresh_postgres_database() if dialect == "postgresql" else nullcontext() as url:
        state = tmp_path / "state"
        config_file = tmp_path / "gateway.yaml"
        # Flushes far apart: at the kill most records are only in the spool.
        config_file.write_text(yaml.safe_dump(config_for(slow_fake, state, url,
                                                         flush_seconds=5.0)))
        port = free_port()
        gateway = await asyncio.to_thread(GatewayProcess, config_file, port)
        load = Load(gateway.base + "/v1")
        load.start()
        try:
            await load.until(300)
            gateway.kill()  # in the middle of requests: no shutdown, no flush
        finally:
            await load.finish()
        spooled = sum(p.read_bytes().count(b"\n")
                      for p in (state / "ledger-spool").glob(f"*{SEGMENT}"))
        assert spooled > 0, "the test must kill the gateway while records are spooled"

        restarted = await asyncio.to_thread(GatewayProcess, config_file, port)
        assert restarted.terminate() == 0  # it replayed the spool; SIGTERM flushes the rest
        if url is None:
            counts = _counts_sqlite(state / "gateway.db")
        else:
            counts = await _counts_postgres(url)
        assert_exactly_once(counts, load.completed)
        assert list((state / "ledger-spool").glob(f"*{SEGMENT}")) == []


async def test_postgres_restart_mid_load_loses_nothing(slow_fake: FakeUpstream,
                                                       tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(PostgresCluster().start)
    try:
        config = parse_config(config_for(slow_fake, tmp_path, cluster.url, flush_seconds=0.1),
                              env={k: v for k, v in ENV.items() if k != DATA_DIR_VAR})
        server = await asyncio.to_thread(GatewayServer(config, env=ENV).start)
        ledger: Ledger = server.app.state.accountant.ledger  # type: ignore[union-attr]
        load = Load(server.url)
        load.start()
        try:
            await load.until(50)
            await asyncio.to_thread(cluster.stop)
            served_while_down = len(load.completed)
            await load.until(served_while_down + 150)  # the gateway keeps serving
            assert ledger.pending > 0  # queued on disk meanwhile
            await asyncio.to_thread(cluster.start)
            await load.until(len(load.completed) + 50)
        finally:
            await load.finish()
        deadline = time.monotonic() + 60  # the writer's backoff is at most 30 s
        while ledger.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert ledger.pending == 0
        await asyncio.to_thread(server.stop)
        assert_exactly_once(await _counts_postgres(cluster.url), load.completed)
    finally:
        await asyncio.to_thread(cluster.destroy)


async def test_queue_metric_rises_while_the_database_is_down(tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(PostgresCluster().start)
    try:
        config = parse_config({"storage": {"data_dir": str(tmp_path)}}, env={})
        db = await connect(cluster.url, config)
        metrics = GatewayMetrics()
        ledger = Ledger(db, tmp_path / "spool", flush_seconds=0.05, metrics=metrics)
        await ledger.start()

        def depth() -> float | None:
            return metrics.registry.get_sample_value("llm_gateway_ledger_queue_depth")

        await asyncio.to_thread(cluster.stop)
        for i in range(40):
            ledger.record(make_record(i))
        assert not await ledger.flush()
        await _eventually(lambda: depth() == 40)
        assert "unavailable" in ledger.health()
        await asyncio.to_thread(cluster.start)
        await _eventually(lambda: depth() == 0, timeout=60)
        assert ledger.health() == "ok"
        assert len(await db.fetch(f"SELECT record_id FROM {TABLE}")) == 40
        await ledger.aclose()
        await db.aclose()
    finally:
        await asyncio.to_thread(cluster.destroy)


async def _eventually(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
