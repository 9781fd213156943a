"""`llm-gateway serve --workers 2`: one scrape, whichever process answers it, counts the
requests of both; the shared metrics folder is emptied at start; logs are JSON lines."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
from prometheus_client.mmap_dict import MmapedDict

from llm_gateway.testing import FakeUpstream

from metrics_support import settled, value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(config: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", config,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.communicate()[0])
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def _traffic(port: int, n: int) -> int:
    """``n`` chats, each on a new connection (so both processes get some); prompt tokens."""
    prompt = 0
    for i in range(n):
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {i}"}]},
            headers={"authorization": "Bearer sk-never-logged"})
        assert r.status_code == 200
        prompt += r.json()["usage"]["prompt_tokens"]
    return prompt


def _counted_by_process(folder) -> dict[str, float]:
    """Requests each process counted, from its own file in the shared folder."""
    counted = {}
    for path in folder.glob("counter_*.db"):
        pid = path.stem.split("_")[1]
        for key, count, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "llm_gateway_requests":
                counted[pid] = counted.get(pid, 0.0) + count
    return counted


def test_two_processes_share_their_metrics(tmp_path):
    folder = tmp_path / "metrics"
    with FakeUpstream() as fake:
        config = tmp_path / "gateway.yaml"
        config.write_text(textwrap.dedent(f"""
            server: {{shutdown_grace_seconds: 5}}
            upstreams:
              openai: {{base_url: "{fake.url}", list_models: false}}
            models:
              - {{name: gpt-4o-mini, backend: openai}}
            metrics: {{multiprocess_dir: "{folder}"}}
        """))
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _serve(str(config), port)
        try:
            _traffic(port, 3)
            settled(base, 3)
        finally:
            _stop(proc)
        assert list(folder.glob("*.db"))  # what the first run left behind

        proc = _serve(str(config), port)
        try:
            sent = prompt = 0
            while sent < 100:  # until both processes have served some (new connections
                prompt += _traffic(port, 10)  # are spread by the kernel, so that is soon)
                sent += 10
                settled(base, sent)
                if len(_counted_by_process(folder)) == 2:
                    break
            counted = _counted_by_process(folder)
            assert len(counted) == 2 and sum(counted.values()) == sent, counted
            for _ in range(6):  # every scrape, whichever process answers it, sees them all
                samples = settled(base, sent)
                assert value(samples, "llm_gateway_requests_total", model="gpt-4o-mini",
                             status="200") == sent
                assert value(samples, "llm_gateway_tokens_total", kind="prompt") == prompt
                assert value(samples, "llm_gateway_request_duration_seconds_count") == sent
                assert value(samples, "llm_gateway_inflight_requests") == 0
        finally:
            out = _stop(proc)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "llm_gateway.access"]
    assert len(access) == sent
    assert {line["status"] for line in access} == {200}
    assert "sk-never-logged" not in out and "hi 1" not in out
    assert len({line["request_id"] for line in access}) == sent
