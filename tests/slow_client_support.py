"""A client that speaks HTTP/1.1 by hand over a raw socket, to send what no library would:
a head cut short, a body that stalls or trickles. For the slow-client tests of the gateway
and of the worker.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import httpx
import orjson


def connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if first:
        sock.sendall(first)
    return sock


def until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection, which it must within
    ``within`` seconds (from now)."""
    deadline = time.monotonic() + within
    received = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still open after {within} s; got {received[:200]!r}")
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data
    finally:
        sock.close()


def assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"connection: close" in head.lower()
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_timeout"


def trickle(sock: socket.socket, data: bytes, every: float) -> None:
    """Sends ``data`` a byte every ``every`` seconds, from a thread, until it is all sent or
    the connection is closed."""
    def run() -> None:
        with contextlib.suppress(OSError):
            for i in range(len(data)):
                time.sleep(every)
                sock.sendall(data[i:i + 1])

    threading.Thread(target=run, daemon=True).start()


def until_closed_or_answered(sock: socket.socket, *, keep_open: bool = False) -> bytes:
    """One whole response (its content-length body included)."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    if not keep_open:
        sock.close()
    return data


def serve(tmp_path, fake_url: str, server: str, *extra: str,
          preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.Popen, int]:
    """`llm-gateway serve` (its stdout and stderr in one text pipe) in front of ``fake_url``,
    with ``server`` (YAML flow items) in its server section; once it answers: it and its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""
        server: {{log_level: warning, {server}}}
        upstreams:
          openai: {{base_url: "{fake_url}", list_models: false}}
        models:
          - {{name: "gpt-*", backend: openai}}
    """))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", str(path), "--port",
         str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=preexec_fn)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return proc, port
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read()) from None  # type: ignore[union-attr]
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("gateway did not start")
