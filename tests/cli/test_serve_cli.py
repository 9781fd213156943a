"""`llm-gateway serve` as a real process: fast start, graceful SIGTERM; `config check`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from llm_gateway.testing import FakeUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path, upstream_url: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""
        server: {{shutdown_grace_seconds: 10, log_level: warning}}
        upstreams:
          openai: {{base_url: "{upstream_url}", list_models: false}}
        models:
          - {{name: "gpt-*", backend: openai}}
    """))
    return str(path)


def start(config: str, port: int, *extra: str) -> tuple[subprocess.Popen, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", config,
         "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    while time.monotonic() - started < 20:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=0.5)
            return proc, time.monotonic() - started
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode()) from None
            time.sleep(0.02)
    proc.kill()
    raise AssertionError("gateway did not start")


def test_serve_is_ready_fast_and_drains_streams_on_sigterm(tmp_path):
    with FakeUpstream(chunk_delay=0.05) as fake:
        port = free_port()
        proc, ready_after = start(write_config(tmp_path, fake.url), port)
        try:
            # A hang, not a speed check: the start's speed is bench/startup.py's figure (a
            # timed assertion here failed on a busy 2-core machine at 5.2 s).
            assert ready_after < 15.0
            body = {"model": "gpt-4o-mini", "stream": True,
                    "messages": [{"role": "user", "content": " ".join(["w"] * 30)}]}
            received: list[bytes] = []

            def read_stream() -> None:
                with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                                  json=body, timeout=10) as r:
                    received.extend(r.iter_bytes())

            reader = threading.Thread(target=read_stream)
            reader.start()
            assert fake.wait_for(lambda: fake.calls["POST /v1/chat/completions"] == 1)
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            reader.join(15)
            text = b"".join(received).decode()
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
            assert proc.wait(15) == 0
            # Once it has stopped, nothing listens any more.
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_serve_with_several_workers(tmp_path):
    with FakeUpstream() as fake:
        port = free_port()
        proc, _ = start(write_config(tmp_path, fake.url), port, "--workers", "2")
        try:
            for _ in range(4):
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={
                    "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
                assert r.json()["choices"][0]["message"]["content"] == "Echo: hi"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def test_bad_config_fails_at_start_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("upstreams:\n  openai: {base_url: 'https://x/v1'}\n"
                    "models:\n  - {name: a, backend: opnai}\n")
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "serve", "--config", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "models[0].backend: unknown backend 'opnai'" in out.stderr


def test_an_unreadable_tls_file_fails_at_start_naming_it(tmp_path):
    path = tmp_path / "tls.yaml"
    path.write_text(f"upstreams:\n  corp: {{base_url: 'https://x/v1', ca_file: "
                    f"'{tmp_path / 'missing.pem'}'}}\nmodels:\n  - {{name: a, backend: corp}}\n")
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "serve", "--config", str(path),
                          "--port", "0"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "upstreams.corp: its TLS files cannot be used" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_check(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("upstreams:\n  openai: {base_url: 'https://x/v1'}\n")
    ok = subprocess.run([sys.executable, "-m", "llm_gateway", "config", "check", str(good)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {prot: 1}\n")
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "config", "check", str(bad)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "LLM_GATEWAY__SERVER__PORT": "abc"})
    assert out.returncode == 1
    assert "server.prot: unknown key" in out.stderr
    assert "server.port" in out.stderr


def test_several_gateway_processes_refuse_spawned_local_workers(tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("local:\n  smol: {model: default}\nmodels:\n  - {name: smol, backend: smol}\n")
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "serve", "--config", str(path),
                          "--workers", "2"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "local.smol" in out.stderr and "urls" in out.stderr
