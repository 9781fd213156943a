"""Worker discovery by DNS, with a stub resolver: answers -> worker URLs -> the pool's workers.

The same with real workers behind a gateway is tests/local/test_local_discovery.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from llm_gateway.backends import discovery
from llm_gateway.backends.discovery import Discovery, system_resolver, worker_url
from llm_gateway.backends.pool import WorkerPool
from llm_gateway.backends.supervisor import Supervisor
from llm_gateway.config import LocalConfig


class StubResolver:
    """Answers with ``answer``: a list of addresses, or an exception to raise."""

    def __init__(self, answer: list[str] | BaseException) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return list(self.answer)


def test_worker_urls() -> None:
    assert worker_url("10.1.2.3", 8090) == "http://10.1.2.3:8090"
    assert worker_url("fd00::7", 8090) == "http://[fd00::7]:8090"


async def test_lookup_lists_each_address_once() -> None:
    stub = StubResolver(["10.0.0.7", "10.0.0.8", "10.0.0.7", "fd00::1"])
    found = Discovery("dns://llm-worker:9000", 1.0, resolver=stub)
    assert await found.lookup() == {
        "http://10.0.0.7:9000", "http://10.0.0.8:9000", "http://[fd00::1]:9000"}
    assert stub.asked == [("llm-worker", 9000)]


async def test_port_defaults_to_the_worker_images_port() -> None:
    stub = StubResolver(["10.0.0.7"])
    assert await Discovery("dns://llm-worker", 1.0, resolver=stub).lookup() == {
        "http://10.0.0.7:8090"}


async def test_a_name_that_does_not_exist_means_no_workers() -> None:
    # A headless Service without a ready pod answers NXDOMAIN.
    stub = StubResolver(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert await Discovery("dns://llm-worker:8090", 1.0, resolver=stub).lookup() == set()


@pytest.mark.parametrize("error", [
    socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    OSError("resolver unavailable"),
])
async def test_other_failures_say_nothing(error: BaseException) -> None:
    found = Discovery("dns://llm-worker:8090", 1.0, resolver=StubResolver(error))
    assert await found.lookup() is None


async def test_a_lookup_that_hangs_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "LOOKUP_TIMEOUT_SECONDS", 0.05)

    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    assert await Discovery("dns://llm-worker:8090", 1.0, resolver=hang).lookup() is None


async def test_system_resolver_resolves_from_the_hosts_file() -> None:
    assert "127.0.0.1" in await system_resolver("localhost", 8090)


def test_module_resolver_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = StubResolver([])
    monkeypatch.setattr(discovery, "system_resolver", stub)
    assert Discovery("dns://x", 1.0)._resolve is stub


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_supervisor_makes_the_pool_follow_the_answers() -> None:
    # Nothing listens on these addresses: the workers stay unhealthy, which is beside the
    # point here (membership is); tests/local/test_local_discovery.py serves real ones.
    cfg = LocalConfig(model="default", discovery="dns://llm-worker:8090",
                      discovery_interval_seconds=0.01, name="smol")
    assert (cfg.spawns, cfg.worker_count) == (False, 0)
    pool = WorkerPool("smol", cfg.worker_count)
    stub = StubResolver(["10.0.0.1"])
    supervisor = Supervisor(cfg, pool, resolver=stub)

    def urls() -> list[str]:
        return sorted(w.url for w in pool.workers)

    await supervisor.start()
    try:
        await wait_for(lambda: urls() == ["http://10.0.0.1:8090"])
        first = pool.workers[0]
        stub.answer = ["10.0.0.1", "10.0.0.2"]
        await wait_for(lambda: len(pool.workers) == 2)
        assert pool.workers[0] is first  # kept, not re-created
        stub.answer = socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
        asked = len(stub.asked)
        await wait_for(lambda: len(stub.asked) > asked + 3)
        assert urls() == ["http://10.0.0.1:8090", "http://10.0.0.2:8090"]  # kept on failure
        stub.answer = ["10.0.0.2"]
        await wait_for(lambda: urls() == ["http://10.0.0.2:8090"])
        assert (first.status, first.healthy) == ("gone", False)
        stub.answer = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        await wait_for(lambda: not pool.workers)
        stub.answer = ["10.0.0.1"]
        await wait_for(lambda: urls() == ["http://10.0.0.1:8090"])
        # A worker coming back is a new worker: indexes are never reused.
        assert pool.workers[0].index not in (0, 1)
        assert len(supervisor._watchers) == 1
    finally:
        await supervisor.aclose()
    assert not supervisor._watchers
