"""No open relay by default (issue 13, defect 3).

A gateway that would listen on a non-loopback address with `auth.mode: none` refuses to
start, through `config check` and `serve` alike, whether the address comes from the file,
`--host` or an env override, unless `auth.mode: none` is written. A config file without
`server.host` listens on 127.0.0.1 only.

No test here listens on a non-loopback address: refusals exit before binding, and the
accepted open configs are checked with `config check`, which binds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from llm_gateway.config import check_file

from services import free_port

UPSTREAM = """
upstreams:
  openai: {base_url: "http://127.0.0.1:9/v1", list_models: false}
models:
  - {name: "gpt-*", backend: openai}
"""
CHOICES = ("auth.mode: keys", "auth.mode: passthrough", "auth.mode: none", "127.0.0.1")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text) + UPSTREAM)
    return str(path)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`llm-gateway ARGS`, expected to exit by itself (a refusal exits before binding)."""
    try:
        return subprocess.run([sys.executable, "-m", "llm_gateway", *args], text=True,
                              capture_output=True, timeout=30, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        pytest.fail(f"`llm-gateway {' '.join(args)}` started instead of refusing")


def assert_refused(out: subprocess.CompletedProcess[str], code: int) -> None:
    assert out.returncode == code, out.stdout + out.stderr
    assert "auth.mode: not set" in out.stderr, out.stderr
    for choice in CHOICES:
        assert choice in out.stderr, (choice, out.stderr)


def test_config_check_refuses_an_open_gateway_on_the_network(tmp_path):
    out = run("config", "check", write(tmp_path, "server: {host: 0.0.0.0}"))
    assert_refused(out, 1)


@pytest.mark.parametrize("host", ["::", "10.1.2.3", "gateway.example.com"])
def test_every_non_loopback_address_counts_as_the_network(tmp_path, host):
    ok, message = check_file(write(tmp_path, f'server: {{host: "{host}"}}'), env={})
    assert not ok and "auth.mode: not set" in message and host in message


def test_config_check_refuses_a_host_from_the_environment(tmp_path):
    out = run("config", "check", write(tmp_path, "server: {port: 8080}"),
              env={"LLM_GATEWAY__SERVER__HOST": "0.0.0.0"})
    assert_refused(out, 1)


@pytest.mark.parametrize("how", ["file", "--host", "env"])
def test_serve_refuses_an_open_gateway_on_the_network(tmp_path, how):
    port = str(free_port())
    if how == "file":
        out = run("serve", "--config", write(tmp_path, "server: {host: 0.0.0.0}"),
                  "--port", port)
    elif how == "--host":
        out = run("serve", "--config", write(tmp_path, "server: {log_level: warning}"),
                  "--host", "0.0.0.0", "--port", port)
    else:
        out = run("serve", "--config", write(tmp_path, "server: {log_level: warning}"),
                  "--port", port, env={"LLM_GATEWAY__SERVER__HOST": "0.0.0.0"})
    assert_refused(out, 2)


@pytest.mark.parametrize(("text", "env"), [
    ("server: {host: 0.0.0.0}\nauth: {mode: none}", {}),  # an open gateway, chosen
    ("server: {host: 0.0.0.0}", {"LLM_GATEWAY__AUTH__MODE": "none"}),
    ("server: {host: 0.0.0.0}\nauth: {mode: keys}", {}),
    ("server: {host: 0.0.0.0}\nauth: {mode: passthrough}", {}),
    ("server: {host: 127.0.0.1}", {}),
    ("server: {host: 127.0.0.2}", {}),
    ("server: {host: '::1'}", {}),
    ("server: {host: localhost}", {}),
    ("server: {port: 8080}", {}),
])
def test_explicit_or_loopback_choices_are_accepted(tmp_path, text, env):
    ok, message = check_file(write(tmp_path, text), env=env)  # what `config check` runs
    assert ok, message


def listening_addresses(port: int) -> set[str]:
    """The local addresses that listen on `port` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def serve_until_healthy(config: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llm_gateway", "serve", "--config", config,
                             "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return proc, port
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[0].decode()) from None
            time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_a_config_file_without_host_listens_on_loopback_only(tmp_path):
    proc, port = serve_until_healthy(write(tmp_path, "server: {log_level: warning}"))
    try:
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        proc.terminate()
        proc.wait(15)


def test_serve_host_on_loopback_overrides_an_open_file(tmp_path):
    proc, port = serve_until_healthy(write(tmp_path, "server: {host: 0.0.0.0}"),
                                     "--host", "127.0.0.1")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
