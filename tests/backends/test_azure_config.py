"""Config errors of kind: azure upstreams, each naming its path."""

from __future__ import annotations

import pytest

from llm_gateway.config import ConfigError, parse_config


def _problems(**upstream) -> list[str]:
    config = {"upstreams": {"az": {"kind": "azure", "base_url": "https://r.openai.azure.com",
                                   **upstream}},
              "models": [{"name": "gpt-4o", "backend": "az"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(config, env={})
    return caught.value.problems


@pytest.mark.parametrize(("name", "why"), [
    ("gpt/4o", "it holds '/'"),
    ("..", "it is a '.' or '..' segment"),
    ("gpt 4o", "it holds ' '"),
    ("gpt%2F4o", "it holds '%'"),
    ("gpt?x=1", "it holds '?'"),
    ("", "it is empty"),
])
def test_a_deployment_name_that_would_change_the_path_is_refused(name: str, why: str) -> None:
    [problem] = _problems(azure_deployments={"gpt-4o": "gpt-4o-prod", "house": name})
    assert problem.startswith(f"upstreams.az.azure_deployments.house: {name!r} cannot be a "
                              f"deployment name: {why}")


@pytest.mark.parametrize("path", ["/openai", "/openai/v1/", "/openai/deployments/gpt-4o"])
def test_base_url_is_the_resource_not_a_path_in_it(path: str) -> None:
    [problem] = _problems(base_url=f"https://r.openai.azure.com{path}")
    assert problem.startswith("upstreams.az.base_url: must be the resource's endpoint")


def test_openai_headers_and_two_credentials_are_refused() -> None:
    assert _problems(organization="org-1", project="proj-1", api_key_env="KEY",
                     auth_token_env="TOKEN") == [
        "upstreams.az.organization: only for kind: openai (this upstream is kind: azure)",
        "upstreams.az.project: only for kind: openai (this upstream is kind: azure)",
        "upstreams.az.auth_token_env: set one of api_key_env, auth_token_env and entra",
    ]


def test_three_credentials_are_one_problem() -> None:
    entra = {"tenant_id": "t", "client_id": "c", "client_secret_env": "S"}
    assert _problems(api_key_env="KEY", auth_token_env="TOKEN", entra=entra) == [
        "upstreams.az.entra: set one of api_key_env, auth_token_env and entra"]


def test_a_good_azure_upstream_loads() -> None:
    config = parse_config({"upstreams": {"az": {
        "kind": "azure", "base_url": "https://apim.example.com/gateway/", "api_key_env": "K",
        "api_version": "2025-04-01-preview",
        "azure_deployments": {"gpt-4o": "gpt-4o_prod.v2~1"}}},
        "models": [{"name": "gpt-4o", "backend": "az"}]}, env={})
    upstream = config.upstreams["az"]
    assert (upstream.kind, upstream.azure_deployments) == ("azure", {"gpt-4o": "gpt-4o_prod.v2~1"})
