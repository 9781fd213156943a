"""Two `llm-gateway serve` processes sharing one Redis hold one rate limit, not two."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest

from llm_gateway.testing import FakeUpstream

from limits_support import unique
from services import free_port, redis_url

LIMIT = 8


def serve(config: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", config,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=0.5)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.stdout.read().decode()) from None
            time.sleep(0.05)


@pytest.fixture
def replicas(tmp_path) -> Iterator[list[str]]:
    url = redis_url()
    with FakeUpstream() as fake:
        config = tmp_path / "gateway.yaml"
        config.write_text(textwrap.dedent(f"""
            server: {{log_level: warning}}
            upstreams:
              openai: {{base_url: "{fake.url}", list_models: false}}
            models:
              - {{name: "gpt-*", backend: openai}}
            storage: {{redis_url: "{url}"}}
            limits:
              models: {{"gpt-*": {{rpm: {LIMIT}}}}}
        """))
        procs = [serve(str(config)) for _ in range(2)]
        try:
            yield [base for _, base in procs]
        finally:
            for proc, _ in procs:
                proc.terminate()
            for proc, _ in procs:
                proc.wait(15)


async def _burst(bases: list[str], model: str, n: int) -> list[tuple[str, int]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=10) as client:
        async def one(i: int) -> tuple[str, int]:
            base = bases[i % len(bases)]
            r = await client.post(f"{base}/v1/chat/completions", json=body)
            return base, r.status_code
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_two_processes_sharing_redis_admit_the_limit_once(replicas):
    model = unique("gpt-shared")  # its own limit, whatever earlier runs left in Redis
    results = asyncio.run(_burst(replicas, model, 3 * LIMIT))
    statuses = [status for _, status in results]
    assert statuses.count(200) == LIMIT  # not 2 x LIMIT
    assert statuses.count(429) == 2 * LIMIT
