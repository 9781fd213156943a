"""LLM_GATEWAY__* environment overrides."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.config import ConfigError, default_config, parse_config

BASE: dict[str, Any] = {
    "upstreams": {"openai": {"base_url": "https://api.openai.com/v1"}},
    "models": [
        {"name": "gpt-4o", "backend": "openai"},
        {"name": "gpt-*", "backend": "openai"},
    ],
}


def problems(data: Any, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env)
    return info.value.problems


def test_scalar_overrides_are_parsed_as_yaml() -> None:
    config = parse_config(
        BASE,
        {
            "LLM_GATEWAY__SERVER__PORT": "9000",
            "LLM_GATEWAY__SERVER__ACCESS_LOG": "true",
            "LLM_GATEWAY__SERVER__SHUTDOWN_GRACE_SECONDS": "2.5",
            "LLM_GATEWAY__SERVER__LOG_LEVEL": "debug",
        },
    )
    assert config.server.port == 9000
    assert config.server.access_log is True
    assert config.server.shutdown_grace_seconds == 2.5
    assert config.server.log_level == "debug"


def test_override_beats_file_value() -> None:
    data = {**BASE, "server": {"port": 1234}}
    assert parse_config(data, {"LLM_GATEWAY__SERVER__PORT": "4321"}).server.port == 4321


def test_string_fields_keep_the_text_as_written() -> None:
    env = {
        "LLM_GATEWAY__SERVER__HOST": "127.0.0.1",
        "LLM_GATEWAY__UPSTREAMS__OPENAI__ORGANIZATION": "12345",
        "LLM_GATEWAY__UPSTREAMS__OPENAI__PROJECT": "a: b",
    }
    config = parse_config(BASE, env)
    assert config.server.host == "127.0.0.1"
    assert config.upstreams["openai"].organization == "12345"
    assert config.upstreams["openai"].project == "a: b"


def test_null_override_clears_optional() -> None:
    env = {"LLM_GATEWAY__UPSTREAMS__OPENAI__TIMEOUTS__TOTAL": "null"}
    assert parse_config(BASE, env).upstreams["openai"].timeouts.total is None


def test_nested_mapping_creation() -> None:
    env = {
        "LLM_GATEWAY__UPSTREAMS__LOCAL__BASE_URL": "http://127.0.0.1:8000/v1",
        "LLM_GATEWAY__UPSTREAMS__LOCAL__TIMEOUTS__READ": "30",
        "LLM_GATEWAY__UPSTREAMS__LOCAL__HEADERS": "{X-Team: ml}",
        "LLM_GATEWAY__ROUTING__DEFAULT_BACKEND": "local",
    }
    config = parse_config(BASE, env)
    local = config.upstreams["local"]
    assert local.name == "local"
    assert local.base_url == "http://127.0.0.1:8000/v1"
    assert local.timeouts.read == 30.0
    assert local.headers == {"X-Team": "ml"}
    assert config.routing.default_backend == "local"
    assert list(config.upstreams) == ["openai", "local"]


def test_creates_sections_missing_from_empty_config() -> None:
    env = {"LLM_GATEWAY__UPSTREAMS__OPENAI__BASE_URL": "https://proxy.example/v1"}
    assert parse_config(None, env).upstreams["openai"].base_url == "https://proxy.example/v1"


def test_existing_key_matched_case_insensitively() -> None:
    data = {"upstreams": {"OpenAI": {"base_url": "https://a/v1"}}}
    env = {"LLM_GATEWAY__UPSTREAMS__OPENAI__BASE_URL": "https://b/v1"}
    assert list(parse_config(data, env).upstreams) == ["OpenAI"]
    assert parse_config(data, env).upstreams["OpenAI"].base_url == "https://b/v1"


def test_list_replace() -> None:
    env = {"LLM_GATEWAY__MODELS": "[{name: x, backend: openai, aliases: [y, z]}]"}
    config = parse_config(BASE, env)
    assert [(m.name, m.aliases) for m in config.models] == [("x", ["y", "z"])]


def test_list_index() -> None:
    env = {
        "LLM_GATEWAY__UPSTREAMS__AZURE__BASE_URL": "https://azure/v1",
        "LLM_GATEWAY__MODELS__1__BACKEND": "azure",
        "LLM_GATEWAY__MODELS__0__ALIASES": "[gpt-4o-latest]",
    }
    config = parse_config(BASE, env)
    assert config.models[1].backend == "azure"
    assert config.models[0].aliases == ["gpt-4o-latest"]


def test_list_replace_then_index() -> None:
    env = {
        "LLM_GATEWAY__MODELS": "[{name: a, backend: x}]",
        "LLM_GATEWAY__MODELS__0__BACKEND": "openai",
    }
    assert parse_config(BASE, env).models[0].backend == "openai"


def test_applies_to_default_config() -> None:
    config = default_config(
        {
            "LLM_GATEWAY__SERVER__PORT": "9001",
            "LLM_GATEWAY__UPSTREAMS__OPENAI__BASE_URL": "https://proxy.example/v1/",
        }
    )
    assert config.server.port == 9001
    assert config.upstreams["openai"].base_url == "https://proxy.example/v1"
    assert config.source == "<default>"


def test_unrelated_variables_ignored() -> None:
    env = {"LLM_GATEWAY_CONFIG": "/nonexistent.yaml", "LLM_GATEWAYX__SERVER__PORT": "x"}
    assert parse_config(BASE, env).server.port == 8080


def test_unknown_key_names_the_env_var() -> None:
    [problem] = problems(BASE, {"LLM_GATEWAY__SERVER__PROT": "9000"})
    assert problem.startswith(
        "LLM_GATEWAY__SERVER__PROT (server.prot): unknown key (expected one of: host, port, "
    )


def test_bad_value_names_the_env_var() -> None:
    assert problems(BASE, {"LLM_GATEWAY__SERVER__PORT": "abc"}) == [
        "LLM_GATEWAY__SERVER__PORT (server.port): expected an integer, got 'abc' (str)"
    ]


def test_problem_inside_replaced_list_names_the_env_var() -> None:
    env = {"LLM_GATEWAY__MODELS": "[{name: x, backend: opnai}, {name: y}]"}
    assert problems(BASE, env) == [
        "LLM_GATEWAY__MODELS (models[0].backend): unknown backend 'opnai' (known: openai)",
        "LLM_GATEWAY__MODELS (models[1].backend): required (or a list of deployments)",
    ]


def test_file_problems_not_blamed_on_env() -> None:
    data = {**BASE, "server": {"workers": 0}}
    assert problems(data, {"LLM_GATEWAY__SERVER__PORT": "1"}) == [
        "server.workers: must be >= 1, got 0"
    ]


def test_bad_override_paths() -> None:
    env = {
        "LLM_GATEWAY__MODELS__5__BACKEND": "openai",
        "LLM_GATEWAY__MODELS__FIRST": "x",
        "LLM_GATEWAY__SERVER__PORT__X": "1",
        "LLM_GATEWAY__SERVER____PORT": "1",
    }
    data = {**BASE, "server": {"port": 8080}}
    assert sorted(problems(data, env)) == [
        "LLM_GATEWAY__MODELS__5__BACKEND (models[5]): index out of range (models has 2 items)",
        "LLM_GATEWAY__MODELS__FIRST (models.first): models is a list; use a numeric index",
        "LLM_GATEWAY__SERVER__PORT__X (server.port.x): server.port is 8080 (int), not a mapping",
        "LLM_GATEWAY__SERVER____PORT: malformed override name (empty path segment)",
    ]


def test_descending_past_a_default_creates_a_mapping_and_type_error() -> None:
    # server.port is not in the data, so the override creates {x: 1} there; the builder says why.
    assert problems(BASE, {"LLM_GATEWAY__SERVER__PORT__X": "1"}) == [
        "LLM_GATEWAY__SERVER__PORT__X (server.port): expected an integer, got a mapping"
    ]
