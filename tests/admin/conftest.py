"""One gateway with the admin API on (keys mode, a config team, its own data dir)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    config = keys_config(fake.url, str(tmp_path_factory.mktemp("admin")))
    env = gateway_env()
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server


@pytest.fixture
def api(gw: GatewayServer) -> Admin:
    return Admin(gw)
