"""Helpers shared by tests/auth and tests/admin: the admin key, configs, an admin client.

A module of its own, not conftest.py: pytest imports every conftest.py as "conftest", so
importing helpers from one picks whichever was registered last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, gateway_config

ADMIN_KEY = "lgw-admin-test-key-0123456789"
SECRET = "test-hash-secret-0123456789abcdef"


def gateway_env(admin_key: str | None = ADMIN_KEY, **extra: str) -> dict[str, str]:
    """The tests' env without the session's storage override (each test names its data_dir)."""
    env = {k: v for k, v in ENV.items() if not k.startswith("LLM_GATEWAY__STORAGE")}
    if admin_key is not None:
        env["LLM_GATEWAY_ADMIN_KEY"] = admin_key
    return {**env, **extra}


def keys_config(upstream_url: str, data_dir: str, auth: dict | None = None, **overrides) -> dict:
    """Keys mode, a read-only config team "research", the database in `data_dir`."""
    settings = {
        "teams": {"research": {"models": ["gpt-4o-mini"], "limits": {"rpm": 60}}},
        "storage": {"data_dir": data_dir},
        "accounting": {"flush_seconds": 0.05},
        **overrides,
    }
    return gateway_config(upstream_url, auth={"mode": "keys", "cache_seconds": 60,
                                              **(auth or {})}, **settings)


def keys_server(upstream_url: str, data_dir: str) -> GatewayServer:
    """A keys-mode gateway (keys_config) with the admin key, not started yet."""
    env = gateway_env()
    return GatewayServer(parse_config(keys_config(upstream_url, data_dir), env=env), env=env)


def keys_gateways(fake: FakeUpstream, tmp_path: Path,
                  **defaults) -> Iterator[Callable[..., GatewayServer]]:
    """For a fixture (`yield from`): `start(**config overrides)` starts a keys-mode gateway
    in front of `fake`, its database in tmp_path, so a second start reopens it as a restart or
    a replica would; all are stopped after the test."""
    started: list[GatewayServer] = []

    def make(**overrides) -> GatewayServer:
        env = gateway_env()
        config = keys_config(fake.url, str(tmp_path), **{**defaults, **overrides})
        server = GatewayServer(parse_config(config, env=env), env=env).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def call(gw: GatewayServer, key: str, method: str, path: str, headers: dict | None = None,
         **kwargs) -> httpx.Response:
    """`method path` (under /v1) with a gateway key."""
    return httpx.request(method, gw.url + path, timeout=10,
                         headers={"authorization": f"Bearer {key}", **(headers or {})}, **kwargs)


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Admin:
    """Calls the admin API of `server` with `key` (None: no Authorization header)."""

    def __init__(self, server: GatewayServer, key: str | None = ADMIN_KEY) -> None:
        self.base = server.base
        self.headers = {} if key is None else {"authorization": f"Bearer {key}"}

    def __call__(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.base + path, headers=self.headers, timeout=10,
                             **kwargs)


def new_key(server: GatewayServer, **fields) -> tuple[str, str]:
    """Create a key through the admin API: (id, key)."""
    reply = Admin(server)("POST", "/admin/keys", json={"name": "test", **fields})
    assert reply.status_code == 201, reply.text
    return reply.json()["id"], reply.json()["key"]
