"""Limits hold across processes (issue 13, defect 5).

`server.workers` > 1 without `storage.redis_url` would let each process count rate limits and
budgets on its own (a 1,000-token budget overspent by 120 tokens, rpm 5 admitting 7). So the
gateway refuses to start that way whenever a limit or budget may apply: any in the config, or
keys mode (stored keys and teams may carry their own). With Redis, N processes hold one limit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from llm_gateway.config import check_file
from llm_gateway.testing import FakeUpstream

from services import free_port, redis_url

UPSTREAM = """
upstreams:
  openai: {base_url: "http://127.0.0.1:9/v1", list_models: false}
models:
  - {name: "gpt-*", backend: openai}
"""


def write(tmp_path: Path, text: str, upstream: str = UPSTREAM) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text) + upstream)
    return str(path)


def assert_names_the_fix(message: str) -> None:
    assert "storage.redis_url: not set" in message, message
    assert "server.workers: 1" in message, message


@pytest.mark.parametrize("limits", [
    "limits: {models: {'gpt-*': {rpm: 5}}}",
    "limits: {key_default: {rpm: 5}}",
    "teams: {research: {budget: {tokens: 1000}}}",
    "teams: {research: {limits: {tpm: 1000}}}",
    "auth: {mode: keys}",  # stored keys and teams may carry limits: always shared
])
def test_config_check_refuses_limits_counted_per_process(tmp_path, limits):
    ok, message = check_file(write(tmp_path, f"server: {{workers: 2}}\n{limits}"), env={})
    assert not ok
    assert_names_the_fix(message)
    ok, message = check_file(write(tmp_path, f"server: {{workers: 1}}\n{limits}"), env={})
    assert ok, message


def test_several_processes_without_limits_need_no_redis(tmp_path):
    ok, message = check_file(write(tmp_path, "server: {workers: 4}"), env={})
    assert ok, message


@pytest.mark.parametrize("how", ["file", "--workers", "env"])
def test_serve_refuses_several_processes_without_redis(tmp_path, how):
    budget = "teams: {research: {budget: {tokens: 1000}}}\n"
    args = ["--port", str(free_port())]
    env = dict(os.environ)
    if how == "file":
        config = write(tmp_path, budget + "server: {workers: 2}")
    else:
        config = write(tmp_path, budget)
        if how == "--workers":
            args += ["--workers", "2"]
        else:
            env["LLM_GATEWAY__SERVER__WORKERS"] = "2"
    try:
        out = subprocess.run([sys.executable, "-m", "llm_gateway", "serve", "--config", config,
                              *args], capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the gateway started several processes with per-process limits")
    assert out.returncode == 2, out.stderr
    assert_names_the_fix(out.stderr)


def test_several_processes_sharing_redis_hold_one_limit(tmp_path):
    url = redis_url()
    limit = 5
    with FakeUpstream() as fake:
        config = write(tmp_path, f"""
            server: {{workers: 2, log_level: warning}}
            storage: {{redis_url: "{url}"}}
            limits: {{models: {{"gpt-*": {{rpm: {limit}}}}}}}
        """, upstream=textwrap.dedent(f"""
            upstreams:
              openai: {{base_url: "{fake.url}", list_models: false}}
            models:
              - {{name: "gpt-*", backend: openai}}
        """))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "llm_gateway", "serve", "--config",
                                 config, "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, port)
            # A model of its own: its own limit, whatever earlier runs left in Redis.
            model = f"gpt-workers-{uuid.uuid4().hex[:8]}"
            statuses = asyncio.run(burst(port, model, 3 * limit))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert statuses.count(200) == limit, statuses
    assert statuses.count(429) == 2 * limit, statuses


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 40
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.communicate()[0].decode())
        time.sleep(0.05)


async def burst(port: int, model: str, n: int) -> list[int]:
    """`n` chats at once, each on its own connection, so both processes take some."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}

    async def one() -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            return r.status_code

    return await asyncio.gather(*(one() for _ in range(n)))
