"""Validation: every problem names its path, and all problems are reported together."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from llm_gateway.config import ConfigError, parse_config

SERVER_KEYS = (
    "host, port, workers, max_body_bytes, max_upload_bytes, max_sse_event_bytes, "
    "max_answer_bytes, header_timeout_seconds, body_timeout_seconds, "
    "body_min_bytes_per_second, max_connections, shutdown_grace_seconds, "
    "log_level, log_format, log_bodies, access_log"
)


def problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return info.value.problems


def two_upstreams(**extra: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "openai": {"base_url": "https://api.openai.com/v1"},
            "azure": {"base_url": "https://example.openai.azure.com/v1"},
        },
        **extra,
    }


def test_config_error_str_is_one_problem_per_line() -> None:
    err = ConfigError(["a: x", "b: y"], "f.yaml")
    assert str(err) == "a: x\nb: y"
    assert err.problems == ["a: x", "b: y"] and err.source == "f.yaml"
    assert pickle.loads(pickle.dumps(err)).problems == ["a: x", "b: y"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"server": {"port": "abc"}}, "server.port: expected an integer, got 'abc' (str)"),
        ({"server": {"port": True}}, "server.port: expected an integer, got True (bool)"),
        ({"server": {"port": 80.5}}, "server.port: expected an integer, got 80.5 (float)"),
        ({"server": {"host": 1}}, "server.host: expected a string, got 1 (int)"),
        (
            {"server": {"access_log": "yes"}},
            "server.access_log: expected true or false, got 'yes' (str)",
        ),
        (
            {"server": {"shutdown_grace_seconds": "soon"}},
            "server.shutdown_grace_seconds: expected a number, got 'soon' (str)",
        ),
        (
            {"server": {"shutdown_grace_seconds": False}},
            "server.shutdown_grace_seconds: expected a number, got False (bool)",
        ),
        (
            {"server": {"log_level": "verbose"}},
            "server.log_level: expected one of 'debug', 'info', 'warning', 'error'; "
            "got 'verbose' (str)",
        ),
        ({"server": [1]}, "server: expected a mapping, got a list"),
        ({"models": {"name": "x"}}, "models: expected a list, got a mapping"),
        ({"upstreams": ["openai"]}, "upstreams: expected a mapping, got a list"),
        ({"models": ["gpt-4o"]}, "models[0]: expected a mapping, got 'gpt-4o' (str)"),
        ({"upstreams": {"openai": {}}}, "upstreams.openai.base_url: required"),
        ({"upstreams": {"openai": None}}, "upstreams.openai.base_url: required"),
        (
            {"upstreams": {"openai": {"base_url": "api.openai.com"}}},
            "upstreams.openai.base_url: must start with http:// or https://",
        ),
        ({"upstreams": {"x": {"base_url": "https://"}}}, "upstreams.x.base_url: has no host name"),
        (
            {"upstreams": {1: {"base_url": "http://x"}}},
            "upstreams: keys must be non-empty strings, got 1 (int)",
        ),
        (
            {"upstreams": {"x": {"base_url": "http://x", "headers": {"A": 1}}}},
            "upstreams.x.headers.A: expected a string, got 1 (int)",
        ),
        (
            {"upstreams": {"x": {"base_url": "http://x", "transport": "requests"}}},
            "upstreams.x.transport: expected one of 'aiohttp', 'httpx'; got 'requests' (str)",
        ),
        ({"server": {"workers": 0}}, "server.workers: must be >= 1, got 0"),
        ({"server": {"port": 70000}}, "server.port: must be <= 65535, got 70000"),
        ({"server": {"max_body_bytes": 0}}, "server.max_body_bytes: must be > 0, got 0"),
        (
            {"server": {"shutdown_grace_seconds": -1}},
            "server.shutdown_grace_seconds: must be >= 0, got -1.0",
        ),
        (
            {"upstreams": {"x": {"base_url": "http://x", "timeouts": {"total": 0}}}},
            "upstreams.x.timeouts.total: must be > 0, got 0.0",
        ),
        (
            {"upstreams": {"x": {"base_url": "http://x", "retries": {"attempts": -1}}}},
            "upstreams.x.retries.attempts: must be >= 0, got -1",
        ),
        (
            {"upstreams": {"x": {"base_url": "http://x", "timeouts": {"read": float("inf")}}}},
            "upstreams.x.timeouts.read: expected a finite number, got inf (float)",
        ),
        ({"models": [{"name": "", "backend": "x"}]}, "models[0].name: must not be empty"),
        ({"models": [{"backend": "x"}]}, "models[0].name: required"),
    ],
)
def test_single_problem(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [expected]


def test_api_key_env_must_be_a_name_and_is_not_echoed() -> None:
    data = {"upstreams": {"x": {"base_url": "http://x", "api_key_env": "sk-proj-abc123"}}}
    [problem] = problems(data)
    assert problem.startswith("upstreams.x.api_key_env: must be the NAME of the environment")
    assert "sk-proj" not in problem


def test_ints_accepted_for_floats() -> None:
    config = parse_config({"server": {"shutdown_grace_seconds": 5}}, {})
    assert config.server.shutdown_grace_seconds == 5.0
    assert isinstance(config.server.shutdown_grace_seconds, float)


def test_optional_fields_accept_null() -> None:
    data = {"upstreams": {"x": {"base_url": "http://x", "timeouts": {"total": None}}}}
    assert parse_config(data, {}).upstreams["x"].timeouts.total is None


def test_unknown_keys() -> None:
    assert problems({"server": {"prot": 1}}) == [
        f"server.prot: unknown key (expected one of: {SERVER_KEYS}); did you mean 'port'?"
    ]
    assert problems({"servers": {}}) == [
        "servers: unknown key "
        "(expected one of: server, upstreams, local, placement, models, routing, metrics, auth, "
        "teams, limits, storage, accounting, grouping, console, tracing); "
        "did you mean 'server'?"
    ]
    # `name` and `source` are filled in by the loader, so they are not YAML keys.
    [problem] = problems({"upstreams": {"x": {"base_url": "http://x", "name": "y"}}})
    assert problem.startswith("upstreams.x.name: unknown key (expected one of: base_url, ")
    assert problems({"source": "x"})[0].startswith("source: unknown key")


def test_top_level_must_be_a_mapping() -> None:
    assert problems(["a"]) == ["<config>: top level must be a mapping, got a list"]
    with pytest.raises(ConfigError) as info:
        parse_config("text", {}, source="my.yaml")
    assert info.value.problems == ["my.yaml: top level must be a mapping, got 'text' (str)"]


def test_unknown_backends() -> None:
    data = two_upstreams(
        models=[
            {"name": "a", "backend": "openai"},
            {"name": "b", "backend": "azure"},
            {"name": "c", "backend": "opnai"},
        ],
        routing={"default_backend": "local", "passthrough_backend": "nope"},
    )
    assert problems(data) == [
        "models[2].backend: unknown backend 'opnai' (known: openai, azure)",
        "routing.default_backend: unknown backend 'local' (known: openai, azure)",
        "routing.passthrough_backend: unknown backend 'nope' (known: openai, azure)",
    ]


def test_unknown_backend_with_no_upstreams() -> None:
    assert problems({"models": [{"name": "a", "backend": "openai"}]}) == [
        "models[0].backend: unknown backend 'openai' (known: none)"
    ]


def test_broken_upstream_still_counts_as_known() -> None:
    # Only the missing base_url is reported, not a knock-on "unknown backend".
    data = {"upstreams": {"openai": {}}, "models": [{"name": "a", "backend": "openai"}]}
    assert problems(data) == ["upstreams.openai.base_url: required"]


def test_duplicate_names_and_aliases() -> None:
    data = two_upstreams(
        models=[
            {"name": "gpt-4o", "backend": "openai"},
            {"name": "gpt-4o-mini", "backend": "openai", "aliases": ["gpt-3.5-turbo"]},
            {"name": "gpt-*", "backend": "openai"},
            {"name": "gpt-4o", "backend": "azure"},
            {"name": "mini", "backend": "azure", "aliases": ["gpt-3.5-turbo", "mini"]},
            {"name": "gpt-*", "backend": "azure"},
        ]
    )
    assert problems(data) == [
        "models[3].name: duplicate model name 'gpt-4o' (also models[0])",
        "models[4].aliases[0]: duplicate model name 'gpt-3.5-turbo' (also models[1])",
        "models[4].aliases[1]: duplicate model name 'mini' (also models[4])",
        "models[5].name: duplicate model name 'gpt-*' (also models[2])",
    ]


def test_aliases_on_pattern_route_and_pattern_aliases() -> None:
    data = two_upstreams(
        models=[
            {"name": "gpt-*", "backend": "openai", "aliases": ["gpt"]},
            {"name": "llama", "backend": "azure", "aliases": ["llama-?", "llama-3"]},
        ]
    )
    assert problems(data) == [
        "models[0].aliases: aliases are not allowed on a pattern route ('gpt-*')",
        "models[1].aliases[0]: alias 'llama-?' is a pattern; aliases must be exact names",
    ]


def test_all_problems_collected_at_once() -> None:
    data = {
        "server": {"port": "abc", "prot": 1, "workers": 0},
        "upstreams": {
            "openai": {"base_url": "ftp://api.openai.com"},
            "azure": {"base_url": "https://azure", "retries": {"attempts": "x"}},
        },
        "models": [
            {"name": "gpt-4o", "backend": "openai"},
            {"name": "x", "backend": "opnai"},
            {"name": "gpt-4o", "backend": "azure"},
            {"name": "y"},
        ],
        "routing": {"default_backend": "nope"},
    }
    assert problems(data) == [
        f"server.prot: unknown key (expected one of: {SERVER_KEYS}); did you mean 'port'?",
        "server.port: expected an integer, got 'abc' (str)",
        "server.workers: must be >= 1, got 0",
        "upstreams.openai.base_url: must start with http:// or https://",
        "upstreams.azure.retries.attempts: expected an integer, got 'x' (str)",
        "models[1].backend: unknown backend 'opnai' (known: openai, azure)",
        "models[3].backend: required (or a list of deployments)",
        "models[2].name: duplicate model name 'gpt-4o' (also models[0])",
        "routing.default_backend: unknown backend 'nope' (known: openai, azure)",
    ]
