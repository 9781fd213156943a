"""Shared fixtures: a fake OpenAI upstream (a real server) and the gateway in front of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY, gateway_config


@pytest.fixture(scope="session", autouse=True)
def _state_in_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Gateways under test keep their database and ledger spool (storage.data_dir) in a temp
    dir, never in the real home: through ENV for in-thread gateways, os.environ for
    `llm-gateway serve` subprocesses."""
    path = str(tmp_path_factory.mktemp("gateway-state"))
    ENV["LLM_GATEWAY__STORAGE__DATA_DIR"] = path
    os.environ["LLM_GATEWAY__STORAGE__DATA_DIR"] = path


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_fake(request) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture(scope="session")
def gateway(fake: FakeUpstream) -> Iterator[GatewayServer]:
    with GatewayServer(parse_config(gateway_config(fake.url), env=ENV), env=ENV) as server:
        yield server


@pytest.fixture
def make_gateway(fake: FakeUpstream) -> Iterator[Callable[..., GatewayServer]]:
    """A gateway with its own config, stopped at the end of the test."""
    started: list[GatewayServer] = []

    def make(config: dict | None = None, **overrides) -> GatewayServer:
        data = config if config is not None else gateway_config(fake.url, **overrides)
        server = GatewayServer(parse_config(data, env=ENV), env=ENV).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="sk-client-key", max_retries=0)


@pytest.fixture
def aclient(gateway: GatewayServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client-key", max_retries=0)
