"""One gateway with the admin API on (keys mode, a config team, its own data dir)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, keys_server


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with keys_server(fake.url, str(tmp_path_factory.mktemp("admin"))) as server:
        yield server


@pytest.fixture
def api(gw: GatewayServer) -> Admin:
    return Admin(gw)
