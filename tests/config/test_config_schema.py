"""Schema objects: defaults, immutability, helpers, and the built-in default config."""

from __future__ import annotations

import dataclasses

import pytest

from llm_gateway.config import (
    Config,
    ModelRoute,
    RetryConfig,
    RoutingConfig,
    ServerConfig,
    TimeoutConfig,
    UpstreamConfig,
    default_config,
    defaults,
    parse_config,
)


def test_dataclass_defaults() -> None:
    server = ServerConfig()
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 8080, 1)
    assert server.max_body_bytes == 16 * 1024 * 1024
    assert server.max_upload_bytes == 512 * 1024 * 1024
    assert server.shutdown_grace_seconds == 30.0
    assert server.log_level == "info"
    assert server.access_log is False
    assert TimeoutConfig() == TimeoutConfig(connect=10.0, read=600.0, total=900.0)
    assert RetryConfig() == RetryConfig(attempts=2, backoff_seconds=0.25, max_backoff_seconds=4.0)
    assert RoutingConfig() == RoutingConfig(default_backend=None, passthrough_backend=None)


def test_mutable_defaults_are_not_shared() -> None:
    a, b = UpstreamConfig(base_url="http://a"), UpstreamConfig(base_url="http://b")
    assert a.headers == {} and a.headers is not b.headers
    r1, r2 = ModelRoute(name="x", backend="a"), ModelRoute(name="y", backend="a")
    assert r1.aliases == [] and r1.aliases is not r2.aliases


def test_frozen() -> None:
    config = default_config({"OPENAI_API_KEY": "sk-test"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.upstreams["openai"].base_url = "http://x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.models[0].backend = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.source = "x"  # type: ignore[misc]


def test_base_url_trailing_slash_stripped() -> None:
    assert UpstreamConfig(base_url="https://api.example.com/v1/").base_url == (
        "https://api.example.com/v1"
    )
    config = parse_config({"upstreams": {"a": {"base_url": "http://h:1/v1//"}}}, {})
    assert config.upstreams["a"].base_url == "http://h:1/v1"


def test_api_key_resolves_env_var() -> None:
    up = UpstreamConfig(base_url="http://x", api_key_env="MY_KEY")
    assert up.api_key({"MY_KEY": "sk-123"}) == "sk-123"
    assert up.api_key({"MY_KEY": ""}) is None
    assert up.api_key({}) is None
    assert UpstreamConfig(base_url="http://x").api_key({"MY_KEY": "sk-123"}) is None


def test_headers_not_in_repr() -> None:
    up = UpstreamConfig(base_url="http://x", headers={"Authorization": "Bearer secret"})
    assert "secret" not in repr(up)


def test_model_route_patterns() -> None:
    exact = ModelRoute(name="gpt-4o-mini", backend="openai", aliases=["gpt-3.5-turbo"])
    assert not exact.is_pattern
    assert exact.matches("gpt-4o-mini") and exact.matches("gpt-3.5-turbo")
    assert not exact.matches("gpt-4o")
    star = ModelRoute(name="gpt-*", backend="openai")
    assert star.is_pattern
    assert star.matches("gpt-4o") and star.matches("gpt-") and not star.matches("o1")
    question = ModelRoute(name="o?", backend="openai")
    assert question.is_pattern and question.matches("o1") and not question.matches("o1-mini")
    # Brackets are literal, unlike fnmatch.
    brackets = ModelRoute(name="m[1]*", backend="x")
    assert brackets.matches("m[1]-chat") and not brackets.matches("m1-chat")


def test_default_config_serves_smollm2_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "llama_cpp_available", lambda: True)
    config = default_config({})
    assert config.source == "<default>"
    assert config.upstreams == {}  # no OPENAI_API_KEY, no OpenAI
    assert list(config.local) == ["smollm2"]
    local = config.local["smollm2"]
    assert (local.name, local.model, local.worker_count, local.spawns) == (
        "smollm2", "default", 1, True)
    assert [(m.name, m.backend) for m in config.models] == [("smollm2", "smollm2")]
    assert config.routing.default_backend is None
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.server == ServerConfig()


def test_default_config_adds_openai_when_its_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "llama_cpp_available", lambda: True)
    config = default_config({"OPENAI_API_KEY": "sk-test"})
    assert list(config.upstreams) == ["openai"]
    openai = config.upstreams["openai"]
    assert openai.name == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_key_env == "OPENAI_API_KEY"
    assert openai.api_key({"OPENAI_API_KEY": "sk-test"}) == "sk-test"
    assert [(m.name, m.backend) for m in config.models] == [
        ("smollm2", "smollm2"),
        ("gpt-*", "openai"),
        ("o*", "openai"),
        ("text-embedding-*", "openai"),
        ("chatgpt-*", "openai"),
    ]
    assert config.passthrough_upstream is openai
    assert default_config({"OPENAI_API_KEY": ""}).upstreams == {}  # empty counts as unset


def test_default_config_without_llama_cpp_leaves_the_local_model_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(defaults, "llama_cpp_available", lambda: False)
    with caplog.at_level("WARNING", logger=defaults.__name__):
        config = default_config({"OPENAI_API_KEY": "sk-test"})
    assert config.local == {}
    assert [m.backend for m in config.models] == ["openai"] * 4
    assert "llama-cpp-python is not installed" in caplog.text
    assert "pip install 'llm-gateway[local]'" in caplog.text
    # With neither, the default still builds: a gateway with nothing to route to.
    assert default_config({}).models == []


def test_llama_cpp_check_does_not_import_it() -> None:
    import sys

    had = "llama_cpp" in sys.modules
    defaults.llama_cpp_available()
    assert ("llama_cpp" in sys.modules) == had


def test_default_config_is_fresh_each_time() -> None:
    assert default_config({}) == default_config({})
    assert default_config({}).models is not default_config({}).models


def test_empty_data_is_all_defaults() -> None:
    for data in (None, {}):
        config = parse_config(data, {})
        assert config == Config(source="<config>")
        assert config.upstreams == {} and config.models == []


def test_upstream_name_comes_from_key() -> None:
    config = parse_config({"upstreams": {"local": {"base_url": "http://127.0.0.1:8000/v1"}}}, {})
    assert config.upstreams["local"].name == "local"


def test_passthrough_upstream() -> None:
    two = {"a": {"base_url": "http://a"}, "openai": {"base_url": "http://o"}}
    assert parse_config({"upstreams": two}, {}).passthrough_upstream.name == "openai"
    first = {"b": {"base_url": "http://b"}, "a": {"base_url": "http://a"}}
    assert parse_config({"upstreams": first}, {}).passthrough_upstream.name == "b"
    chosen = parse_config({"upstreams": two, "routing": {"passthrough_backend": "a"}}, {})
    assert chosen.passthrough_upstream.name == "a"
    assert parse_config({}, {}).passthrough_upstream is None


def test_parse_config_does_not_mutate_input() -> None:
    data = {"server": {"port": 1}}
    parse_config(data, {"LLM_GATEWAY__SERVER__PORT": "2", "LLM_GATEWAY__SERVER__HOST": "::1"})
    assert data == {"server": {"port": 1}}
