"""`discovery: dns://...`: real workers found through a stub resolver, as in Kubernetes.

Pods behind a headless Service share one port on different addresses; here that is two real
SmolLM2 workers on 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback) on the same port, and
a resolver stub whose answer the test changes, as DNS would when pods come and go.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from llm_gateway.backends import discovery, supervisor
from llm_gateway.config import LocalConfig
from llm_gateway.testing import FakeUpstream

from local_support import SMOL, LocalGateway, chat_body, healthy, start_gateway, wait_until

ADDRESSES = ("127.0.0.2", "127.0.0.3")
NAME = "llm-worker.llm.svc.cluster.local"


def _shared_port() -> int:
    """A port free on every address of ADDRESSES."""
    for _ in range(20):
        port = supervisor.free_ports(ADDRESSES[0], 1)[0]
        try:
            with socket.socket() as sock:
                sock.bind((ADDRESSES[1], port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


@pytest.fixture(scope="module")
def pods() -> Iterator[int]:
    """Two workers listening on ADDRESSES at one port, like two pods; yields the port."""
    port = _shared_port()
    settings = {k: v for k, v in SMOL.items() if k != "timeouts"}
    procs = []
    try:
        for address in ADDRESSES:
            cfg = LocalConfig(**settings, host=address, name="smol")
            procs.append(subprocess.Popen(supervisor.worker_command(cfg, port),
                                          stdin=subprocess.DEVNULL))
        for address in ADDRESSES:
            url = f"http://{address}:{port}"
            wait_until(lambda u=url: healthy(u), 60, f"{url} not ready")
        yield port
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


class Dns:
    """The resolver stub: the current answer for NAME, or an error to raise."""

    def __init__(self) -> None:
        self.answer: list[str] | BaseException = []

    async def __call__(self, host: str, port: int) -> list[str]:
        assert host == NAME
        if isinstance(self.answer, BaseException):
            raise self.answer
        return list(self.answer)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    stub = Dns()
    monkeypatch.setattr(discovery, "system_resolver", stub)
    return stub


def workers(gateway: LocalGateway) -> dict[str, tuple[int, bool]]:
    """url -> (index, healthy) of the pool's workers now."""
    return {w.url: (w.index, w.healthy) for w in gateway.backend("smol").pool.workers}


def test_gateway_follows_the_pods_dns_lists(fake: FakeUpstream, pods: int, dns: Dns) -> None:
    first, second = (f"http://{address}:{pods}" for address in ADDRESSES)
    dns.answer = [ADDRESSES[0]]
    gateway = start_gateway(fake, {"smol": {
        "discovery": f"dns://{NAME}:{pods}", "discovery_interval_seconds": 0.05,
        "health_interval_seconds": 0.2}})
    try:
        client = gateway.client(timeout=30)
        wait_until(lambda: workers(gateway) == {first: (0, True)}, 30,
                   f"first pod not in use: {workers(gateway)}")
        raw = client.chat.completions.with_raw_response.create(**chat_body("Hi", model="smol"))
        assert raw.headers["x-lgw-worker"] == "0"
        assert raw.parse().choices[0].message.content

        # Scale up: the second pod appears in DNS and gets requests once healthy.
        dns.answer = list(ADDRESSES)
        wait_until(lambda: workers(gateway) == {first: (0, True), second: (1, True)}, 30,
                   f"second pod not in use: {workers(gateway)}")
        seen = set()
        for n in range(30):
            body = chat_body(f"Topic {n}: say yes.", max_tokens=1, model="smol")
            seen.add(client.chat.completions.with_raw_response.create(**body)
                     .headers["x-lgw-worker"])
            if seen == {"0", "1"}:
                break
        assert seen == {"0", "1"}

        # A DNS outage changes nothing.
        dns.answer = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        stream = client.chat.completions.create(
            **chat_body("Count to twenty.", max_tokens=24, stream=True, model="smol"))
        chunks = iter(stream)
        next(chunks)
        assert set(workers(gateway)) == {first, second}

        # Scale down: the first pod leaves DNS. A stream running on it finishes; new requests
        # go to the second one only.
        dns.answer = [ADDRESSES[1]]
        wait_until(lambda: set(workers(gateway)) == {second}, 10,
                   f"first pod not dropped: {workers(gateway)}")
        rest = list(chunks)
        assert rest[-1].choices[0].finish_reason is not None
        for n in range(6):
            body = chat_body(f"Subject {n}: say no.", max_tokens=1, model="smol")
            assert client.chat.completions.with_raw_response.create(**body) \
                .headers["x-lgw-worker"] == "1"

        # No pod at all (NXDOMAIN), then one back: a new worker, with a new index.
        dns.answer = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        wait_until(lambda: not workers(gateway), 10, "pool not emptied")
        dns.answer = [ADDRESSES[0]]
        wait_until(lambda: workers(gateway) == {first: (2, True)}, 30,
                   f"pod not back: {workers(gateway)}")
        raw = client.chat.completions.with_raw_response.create(**chat_body("Hi", model="smol"))
        assert raw.headers["x-lgw-worker"] == "2"
    finally:
        gateway.stop()
