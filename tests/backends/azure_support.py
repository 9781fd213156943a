"""Gateways in front of the fake Azure OpenAI resource, for tests/backends/test_azure*.py."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import openai

from llm_gateway.config import parse_config
from llm_gateway.testing.fake_azure import FakeAzure
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV

AZURE_KEY = "azure-api-key-secret-1"
ENTRA_TOKEN = "entra-id-token-secret-2"
DATED = "2024-10-21"
# routed model name -> the fake's deployment (see DEFAULT_DEPLOYMENTS in fake_azure.py)
DEPLOYMENTS = {"gpt-4o": "gpt-4o-prod", "text-embedding-3-small": "embed-small"}


def azure_env(**more: str) -> dict[str, str]:
    return {**ENV, "LGW_TEST_AZURE_KEY": AZURE_KEY, "LGW_TEST_AZURE_TOKEN": ENTRA_TOKEN, **more}


def azure_config(url: str, *, api_version: str | None = DATED, token: bool = False,
                 **overrides) -> dict:
    """One azure upstream at `url`: api-key (or with `token`, an Entra token), the dated URL
    form (api_version None: the v1 form); routes for mapped, unmapped and client-picked names."""
    upstream: dict = {
        "kind": "azure", "base_url": url, "azure_deployments": DEPLOYMENTS,
        "timeouts": {"connect": 2, "read": 5, "total": 10}, "retries": {"attempts": 0},
    }
    if token:
        upstream["auth_token_env"] = "LGW_TEST_AZURE_TOKEN"
    else:
        upstream["api_key_env"] = "LGW_TEST_AZURE_KEY"
    if api_version is not None:
        upstream["api_version"] = api_version
    config = {
        "upstreams": {"azure": upstream},
        "models": [
            {"name": "gpt-4o", "backend": "azure"},
            {"name": "gpt-4o-mini", "backend": "azure"},  # unmapped: its own deployment
            {"name": "house", "backend": "azure", "upstream_model": "gpt-4o"},
            {"name": "text-embedding-3-small", "backend": "azure"},
            {"name": "az-*", "backend": "azure"},  # the client names the deployment
        ],
    }
    return {**config, **overrides}


def gateways() -> Iterator[Callable[..., GatewayServer]]:
    """For a fixture (`yield from`): `start(config, env=azure_env())`; all are stopped
    afterwards."""
    with contextlib.ExitStack() as running:

        def start(config: dict, env: dict[str, str] | None = None) -> GatewayServer:
            full = azure_env() if env is None else env
            return running.enter_context(GatewayServer(parse_config(config, env=full), env=full))

        yield start


def sdk(server: GatewayServer, key: str = "sk-client-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=15)


def words() -> str:
    """A prompt no other test sends (no grouping between tests)."""
    return f"tell me about run {uuid.uuid4().hex[:8]}"


def last(fake: FakeAzure):
    assert fake.requests, "the fake got no request"
    return fake.requests[-1]
