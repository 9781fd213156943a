"""Auth fixtures: a Database of each dialect, stores over it, and gateways in keys mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from llm_gateway.auth.keystore import KeyStore
from llm_gateway.auth.schema import AUTH_STEPS
from llm_gateway.auth.secret import KeyHasher
from llm_gateway.auth.teamstore import TeamStore
from llm_gateway.config import parse_config
from llm_gateway.config.access import TeamConfig
from llm_gateway.storage.connect import connect
from llm_gateway.storage.database import Database
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import SECRET, Clock, gateway_env, keys_config
from services import fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    config = parse_config({"storage": {"data_dir": str(tmp_path)}}, env={})
    if request.param == "sqlite":
        database = await connect(None, config)
        await database.migrate("auth", AUTH_STEPS)
        yield database
        await database.aclose()
        return
    with fresh_postgres_database() as url:
        database = await connect(url, config)
        await database.migrate("auth", AUTH_STEPS)
        yield database
        await database.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def teams(db: Database, clock: Clock) -> TeamStore:
    return TeamStore(db, {"research": TeamConfig(name="research", models=["gpt-4o-mini"])},
                     clock)


@pytest.fixture
def keys(db: Database, teams: TeamStore, clock: Clock) -> KeyStore:
    return KeyStore(db, KeyHasher(SECRET.encode()), teams, clock)


@pytest.fixture
def keys_gateway(fake, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """Start a gateway in keys mode, its data in tmp_path: `make(auth=..., env=...,
    upstream=URL, **config overrides)`; `server.config_data` is the config it got."""
    started: list[GatewayServer] = []

    def make(auth: dict | None = None, env: dict | None = None, upstream: str | None = None,
             **overrides) -> GatewayServer:
        config = keys_config(upstream or fake.url, str(tmp_path), auth, **overrides)
        full_env = gateway_env(**(env or {}))
        server = GatewayServer(parse_config(config, env=full_env), env=full_env).start()
        server.config_data = config  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def open_fake() -> Iterator[FakeUpstream]:
    """A fake upstream that takes any key (and records which one it got)."""
    with FakeUpstream() as server:
        yield server
