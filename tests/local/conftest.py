"""Fixtures for local-worker tests (their helpers are in local_support.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from llm_gateway.backends import supervisor
from llm_gateway.config import LocalConfig
from llm_gateway.testing import FakeUpstream

from gateway_support import require_local_extra
from local_support import SMOL, LocalGateway, healthy, start_gateway, wait_until
from on_demand_support import OnDemandGateway, start_on_demand

require_local_extra()


@pytest.fixture(scope="session")
def pair(fake: FakeUpstream) -> Iterator[LocalGateway]:
    """Two workers of `smol` behind one gateway, with gpt-* going to the fake upstream."""
    gateway = start_gateway(fake, {"smol": {"workers": 2}})
    try:
        gateway.wait_ready("smol")
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def make_local_gateway(fake: FakeUpstream) -> Iterator[Callable[..., LocalGateway]]:
    """Gateways with their own local backends, stopped at the end of the test."""
    started: list[LocalGateway] = []

    def make(local: dict[str, dict]) -> LocalGateway:
        gateway = start_gateway(fake, local)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@pytest.fixture
def make_on_demand(fake: FakeUpstream) -> Iterator[Callable[..., OnDemandGateway]]:
    """Gateways with on-demand local models and a budget (on_demand_support.py), stopped at
    the end of the test."""
    started: list[OnDemandGateway] = []

    def make(local: dict[str, dict], placement: dict | None = None) -> OnDemandGateway:
        gateway = start_on_demand(fake, local, placement)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.stop()


@dataclass
class ExternalWorker:
    proc: subprocess.Popen
    url: str


@pytest.fixture
def external_workers() -> Iterator[Callable[[int], list[ExternalWorker]]]:
    """Real workers the test starts itself, as someone else's would be (`urls:`)."""
    procs: list[subprocess.Popen] = []

    def start(count: int) -> list[ExternalWorker]:
        settings = {k: v for k, v in SMOL.items() if k != "timeouts"}
        cfg = LocalConfig(**settings, name="ext")
        workers = []
        for port in supervisor.free_ports("127.0.0.1", count):
            proc = subprocess.Popen(supervisor.worker_command(cfg, port),
                                    stdin=subprocess.DEVNULL)
            procs.append(proc)
            workers.append(ExternalWorker(proc, f"http://127.0.0.1:{port}"))
        for worker in workers:
            wait_until(lambda w=worker: healthy(w.url), 60, f"{worker.url} not ready")
        return workers

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)

