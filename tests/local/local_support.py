"""Helpers for local-worker tests: gateways whose local backends run the real worker with the
bundled SmolLM2-135M, next to the fake OpenAI upstream of tests/conftest.py.

Not in conftest.py: see tests/gateway_support.py on the module name "conftest".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import openai

from llm_gateway.backends.local import LocalBackend
from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV

# Small and quick: a 135M model, a short context, one thread per worker on a 2-core machine.
# Health is checked often and restarts come fast, so failures heal within the tests' patience.
SMOL = {
    "model": "default",
    "n_ctx": 1024,
    "n_threads": 1,
    "max_queue": 4,
    "health_interval_seconds": 0.5,
    "restart_backoff_seconds": 0.2,
    "startup_timeout_seconds": 60,
    "timeouts": {"connect": 2, "read": 30, "total": 60},
}


def config_with_local(fake_url: str, local: dict[str, dict]) -> dict:
    """Each local backend routed under its own name (SMOL settings unless overridden), and
    gpt-* to the fake upstream."""
    return {
        "upstreams": {
            "openai": {
                "base_url": fake_url,
                "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                "timeouts": {"connect": 2, "read": 5, "total": 10},
                "retries": {"attempts": 0},
            }
        },
        "local": {name: {**SMOL, **cfg} for name, cfg in local.items()},
        "models": [
            *({"name": name, "backend": name} for name in local),
            {"name": "gpt-*", "backend": "openai"},
        ],
        # These tests send identical temperature-0 requests to see each reach a worker:
        # request grouping (coalescing, the response cache) would answer them itself.
        "grouping": {"coalesce": "off", "cache": {"enabled": False}},
    }


@dataclass
class LocalGateway:
    """A started gateway, with handles on its local backends for inspection."""

    server: GatewayServer

    @property
    def url(self) -> str:
        return self.server.url

    def backend(self, name: str) -> LocalBackend:
        backend = self.server.app.state.backends[name]
        assert isinstance(backend, LocalBackend)
        return backend

    def client(self, timeout: float = 60) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key="sk-client", max_retries=0,
                             timeout=timeout)

    def aclient(self, timeout: float = 60) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url, api_key="sk-client", max_retries=0,
                                  timeout=timeout)

    def wait_ready(self, name: str, timeout: float = 60) -> list[int]:
        """Wait until every worker of ``name`` is healthy; return their pids."""
        workers = self.backend(name).pool.workers
        wait_until(lambda: all(w.healthy for w in workers), timeout,
                   f"workers of {name} not ready: {[w.status for w in workers]}")
        return [w.pid for w in workers if w.pid is not None]

    def stop(self) -> None:
        self.server.stop()


def start_gateway(fake: FakeUpstream, local: dict[str, dict]) -> LocalGateway:
    config = parse_config(config_with_local(fake.url, local), env=ENV)
    return LocalGateway(GatewayServer(config, env=ENV).start())


def wait_until(predicate: Callable[[], bool], timeout: float, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (an unreaped corpse is dead to us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def healthy(url: str) -> bool:
    """Whether a worker at ``url`` answers its health check with 200."""
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def chat_body(*contents: str, max_tokens: int = 8, stream: bool = False,
              model: str = "smol") -> dict:
    """A chat request whose user/assistant turns alternate, starting with the user."""
    messages = [{"role": "system", "content": "You are terse."}]
    for i, content in enumerate(contents):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    return {"model": model, "messages": messages, "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}
