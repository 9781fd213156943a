"""Fixtures of the provider tests: a fake Anthropic upstream and a gateway in front of it, one
each per test module, with the ledger in the module's own directory."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.fake_anthropic import FakeAnthropic
from llm_gateway.testing.gateway import GatewayServer

from anthropic_support import ANTHROPIC_KEY, Served, anthropic_config, anthropic_env


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY, context_window=500) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_anthropic(request: pytest.FixtureRequest) -> None:
    if "anthropic" in request.fixturenames:
        request.getfixturevalue("anthropic").reset()


@pytest.fixture(scope="module")
def served(anthropic: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("anthropic-gateway")
    config = anthropic_config(anthropic.url, data_dir)
    env = anthropic_env()
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield Served(server, data_dir / "gateway.db")


@pytest.fixture
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.gateway.url, api_key="sk-client", max_retries=0,
                         timeout=15)
