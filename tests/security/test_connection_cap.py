"""The open connections of a process are bounded (`server.max_connections`): each holds a file
descriptor and buffers, and past the descriptor limit accept() fails for every client. Before,
uvicorn took any number (its own `limit_concurrency` was unset, and answers plain text). One
past the bound now gets an OpenAI-shaped 503 with Retry-After at once and is closed; once a
connection closes, a new one is served again."""

from __future__ import annotations

import importlib
import re
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from llm_gateway.app.factory import create_app
from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.threaded import ThreadedServer

from gateway_support import ENV, gateway_config
from slow_client_support import connect, serve, until_closed

CAP = 3


@pytest.fixture(params=["HttpToolsClientTimeouts", "H11ClientTimeouts"], ids=["httptools", "h11"])
def served(request, fake: FakeUpstream) -> Iterator[int]:
    data = gateway_config(fake.url, server={"max_connections": CAP})
    app = create_app(parse_config(data, env=ENV), env=ENV)
    protocol = getattr(importlib.import_module("llm_gateway.app.client_timeouts"),
                       request.param)
    runner = ThreadedServer(app, name="gateway", lifespan="on", http=protocol,
                            timeout_graceful_shutdown=2)
    port = runner.start()
    yield port
    runner.stop(timeout=10)


def test_a_connection_past_the_bound_gets_a_503_and_is_closed(served: int) -> None:
    held = [connect(served) for _ in range(CAP)]
    time.sleep(0.2)  # accepted
    answer = until_closed(connect(served), 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
    error = orjson.loads(body)["error"]
    assert error["code"] == "too_many_connections"
    assert "server.max_connections" in error["message"] and str(CAP) in error["message"]
    for sock in held:
        sock.close()
    # Room again: served as usual, and the refusal was counted.
    deadline = time.monotonic() + 5
    while True:
        metrics = httpx.get(f"http://127.0.0.1:{served}/metrics", timeout=5)
        if metrics.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the closed ones may still be counted a moment
    assert metrics.status_code == 200
    found = re.search(r"^llm_gateway_refused_connections_total (\S+)$", metrics.text, re.M)
    assert found is not None and float(found.group(1)) == 1


def serve_with_limit(tmp_path, fake_url: str, limit: tuple[int, int]) -> tuple[str, int]:
    """`llm-gateway serve` started under RLIMIT_NOFILE ``limit`` (soft, hard): what it logged
    and its soft limit once up."""
    proc, _port = serve(tmp_path, fake_url, "log_format: text",
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
    try:
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    return output, soft


def test_serve_raises_its_descriptor_limit_to_fit_the_bound(tmp_path) -> None:
    """With the usual soft limit of 1,024, accept() failed for every client at ~1,000
    connections, far below server.max_connections (10,000)."""
    from llm_gateway.cli.descriptors import RESERVE

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 10_000 + RESERVE
    room = hard == resource.RLIM_INFINITY or hard >= wanted
    with FakeUpstream() as fake:
        output, soft = serve_with_limit(tmp_path, fake.url, (512, hard))
        assert soft == (wanted if room else hard)
        assert ("file-descriptor limit" in output) is not room
        output, soft = serve_with_limit(tmp_path, fake.url, (512, 2048))  # the hard one
        assert soft == 2048
        assert "the file-descriptor limit is 2048" in output
        assert "server.max_connections (10000)" in output
