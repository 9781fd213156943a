"""The `local:` section: llama.cpp worker backends, and the rules tying them to routes."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.config import ConfigError, LocalConfig, TimeoutConfig, parse_config


def problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return info.value.problems


def with_local(local: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": {"openai": {"base_url": "https://api.openai.com/v1"}},
        "local": local,
        "models": [
            {"name": "smol", "backend": "smol"},
            {"name": "gpt-4o-mini", "backend": "openai", "aliases": ["cheap"]},
            {"name": "gpt-*", "backend": "openai"},
        ],
        **extra,
    }


def test_defaults() -> None:
    config = parse_config(with_local({"smol": {"model": "default"}}), {})
    local = config.local["smol"]
    assert local == LocalConfig(model="default", name="smol")
    assert (local.workers, local.urls, local.gpus) == (None, [], [])
    assert (local.worker_count, local.spawns) == (1, True)
    assert (local.n_gpu_layers, local.n_ctx, local.n_batch, local.n_threads) == (0, 4096, 512, None)
    assert (local.flash_attn, local.embeddings, local.max_queue) == ("auto", True, 16)
    assert (local.chat_format, local.chat_template, local.lora) == (None, None, None)
    assert (local.host, local.base_port, local.fallback, local.affinity) == (
        "127.0.0.1", None, None, True)
    assert local.health_interval_seconds == 2.0
    assert (local.restart_backoff_seconds, local.max_restart_backoff_seconds) == (1.0, 30.0)
    assert local.startup_timeout_seconds == 120.0
    assert local.timeouts == TimeoutConfig()


def test_every_key() -> None:
    data = with_local({"smol": {
        "model": "hf://bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf",
        "gpus": [0, 1], "workers": 2, "n_gpu_layers": -1, "n_ctx": 0, "n_batch": 64,
        "n_threads": 4, "flash_attn": True, "chat_template": "/t.jinja", "lora": "/l.gguf",
        "embeddings": False, "max_queue": 1, "host": "0.0.0.0", "base_port": 9100,
        "fallback": "cheap", "health_interval_seconds": 0.5, "restart_backoff_seconds": 0,
        "max_restart_backoff_seconds": 5, "startup_timeout_seconds": 10, "affinity": False,
        "timeouts": {"total": None},
    }})
    local = parse_config(data, {}).local["smol"]
    assert (local.worker_count, local.gpus, local.base_port) == (2, [0, 1], 9100)
    assert (local.fallback, local.affinity, local.timeouts.total) == ("cheap", False, None)


@pytest.mark.parametrize(("value", "flag"), [("auto", "auto"), (True, "on"), (False, "off")])
def test_flash_attn_reaches_the_worker_command(value: object, flag: str) -> None:
    from llm_gateway.backends.worker_process import worker_command

    local = parse_config(with_local({"smol": {"model": "m", "flash_attn": value}}), {})
    cmd = worker_command(local.local["smol"], 9000)
    assert cmd[cmd.index("--flash-attn") + 1] == flag


def test_warmup_off_reaches_the_worker_command() -> None:
    from llm_gateway.backends.worker_process import worker_command

    on = parse_config(with_local({"smol": {"model": "m"}}), {}).local["smol"]
    off = parse_config(with_local({"smol": {"model": "m", "warmup": False}}), {}).local["smol"]
    assert on.warmup and "--no-warmup" not in worker_command(on, 9000)
    assert "--no-warmup" in worker_command(off, 9000)


def test_cache_slots_reach_the_worker_command() -> None:
    from llm_gateway.backends.worker_process import worker_command

    default = parse_config(with_local({"smol": {"model": "m"}}), {}).local["smol"]
    assert default.cache_slots is None and "--cache-slots" not in worker_command(default, 9000)
    four = parse_config(with_local({"smol": {"model": "m", "cache_slots": 4}}), {})
    cmd = worker_command(four.local["smol"], 9000)
    assert cmd[cmd.index("--cache-slots") + 1] == "4"
    with pytest.raises(ConfigError, match="cache_slots"):
        parse_config(with_local({"smol": {"model": "m", "cache_slots": -1}}), {})


def test_tool_format_reaches_the_worker_command_and_is_checked() -> None:
    from llm_gateway.backends.worker_process import worker_command

    auto = parse_config(with_local({"smol": {"model": "m"}}), {}).local["smol"]
    assert auto.tool_format == "auto" and "--tool-format" not in worker_command(auto, 9000)
    told = parse_config(with_local({"smol": {"model": "m", "tool_format": "mistral"}}), {})
    cmd = worker_command(told.local["smol"], 9000)
    assert cmd[cmd.index("--tool-format") + 1] == "mistral"
    with pytest.raises(ConfigError, match="tool_format"):
        parse_config(with_local({"smol": {"model": "m", "tool_format": "chatml"}}), {})


@pytest.mark.parametrize(("local", "flag"), [({}, None), ({"embeddings": False}, "off")])
def test_embeddings_reach_the_worker_command(local: dict, flag: str | None) -> None:
    from llm_gateway.backends.worker_process import worker_command

    config = parse_config(with_local({"smol": {"model": "m", **local}}), {})
    cmd = worker_command(config.local["smol"], 9000)
    # The worker serves them by default; only turning them off is said.
    assert ("--no-embeddings" in cmd) == (flag == "off") and "--embedding" not in cmd


def test_gpus_decide_the_worker_count() -> None:
    config = parse_config(with_local({"smol": {"model": "m.gguf", "gpus": [2, 3, 5]}}), {})
    assert config.local["smol"].worker_count == 3


def test_external_urls_spawn_nothing() -> None:
    urls = ["http://10.0.0.7:8090", "http://10.0.0.8:8090/v1"]
    local = parse_config(with_local({"smol": {"model": "default", "urls": urls}}), {})
    assert (local.local["smol"].spawns, local.local["smol"].worker_count) == (False, 2)


def test_routes_may_name_local_backends_and_default_backend_too() -> None:
    config = parse_config(with_local({"smol": {"model": "default"}},
                                     routing={"default_backend": "smol"}), {})
    assert config.routing.default_backend == "smol"
    # Passthrough stays with upstreams.
    assert config.passthrough_upstream is config.upstreams["openai"]


def test_env_overrides_reach_local_backends() -> None:
    env = {"LLM_GATEWAY__LOCAL__SMOL__WORKERS": "3", "LLM_GATEWAY__LOCAL__SMOL__GPUS": "[0, 1, 2]"}
    local = parse_config(with_local({"smol": {"model": "default"}}), env).local["smol"]
    assert (local.workers, local.gpus) == (3, [0, 1, 2])


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ({"smol": {}}, ["local.smol.model: required"]),
        ({"smol": {"model": ""}}, ["local.smol.model: must not be empty"]),
        (
            {"smol": {"model": "hf://owner/repo"}},
            ["local.smol.model: an hf:// source must be hf://owner/repo/file.gguf"],
        ),
        ({"smol": {"model": "m", "workers": 0}}, ["local.smol.workers: must be >= 1, got 0"]),
        ({"smol": {"model": "m", "max_queue": 0}}, ["local.smol.max_queue: must be >= 1, got 0"]),
        (
            {"smol": {"model": "m", "base_port": 70000}},
            ["local.smol.base_port: must be <= 65535, got 70000"],
        ),
        (
            {"smol": {"model": "m", "workers": 3, "base_port": 65534}},
            ["local.smol.base_port: 3 workers from port 65534 go past 65535"],
        ),
        (
            {"smol": {"model": "m", "gpus": [0, 1], "workers": 3}},
            ["local.smol.workers: must equal the number of gpus (2) or be left out: "
             "one worker runs per GPU"],
        ),
        (
            {"smol": {"model": "m", "gpus": [0, -1, 0]}},
            ["local.smol.gpus[1]: must be >= 0, got -1", "local.smol.gpus[2]: duplicate GPU id 0"],
        ),
        (
            {"smol": {"model": "m", "urls": ["http://a:1", "ftp://b"], "workers": 2,
                      "gpus": [0]}},
            [
                "local.smol.urls[1]: must start with http:// or https://",
                "local.smol.workers: not allowed with urls (the workers are external; "
                "their number is the number of urls)",
                "local.smol.gpus: not allowed with urls (external workers are not spawned)",
            ],
        ),
        (
            {"smol": {"model": "m", "chat_format": "chatml", "chat_template": "t.jinja"}},
            ["local.smol.chat_template: set chat_format or chat_template, not both"],
        ),
        (
            {"smol": {"model": "m", "restart_backoff_seconds": 5,
                      "max_restart_backoff_seconds": 1}},
            ["local.smol.max_restart_backoff_seconds: must be >= restart_backoff_seconds (5.0)"],
        ),
        (
            {"smol": {"model": "m", "n_ctx": "big", "affinity": "yes"}},
            [
                "local.smol.n_ctx: expected an integer, got 'big' (str)",
                "local.smol.affinity: expected true or false, got 'yes' (str)",
            ],
        ),
        (
            {"smol": {"model": "m", "flash_attn": "yes"}},
            ["local.smol.flash_attn: expected one of 'auto', True, False; got 'yes' (str)"],
        ),
        (  # the key's old name (when embeddings were off by default) says what to write now
            {"smol": {"model": "m", "embedding": True}},
            ["local.smol.embedding: renamed to 'embeddings' (write that instead)"],
        ),
        (
            {"smol": {"model": "m", "modle": "x"}},
            ["local.smol.modle: unknown key (expected one of: model, workers, urls, discovery, "
             "discovery_interval_seconds, gpus, n_gpu_layers, n_ctx, n_batch, n_threads, "
             "flash_attn, chat_format, chat_template, tool_format, "
             "lora, embeddings, max_queue, host, base_port, fallback, health_interval_seconds, "
             "restart_backoff_seconds, max_restart_backoff_seconds, startup_timeout_seconds, "
             "engine, parallel, cache_slots, backend_sampling, warmup, affinity, timeouts, "
             "load, "
             "idle_unload_seconds, "
             "load_timeout_seconds, max_waiting, pinned, memory_mib); did you mean 'model'?"],
        ),
    ],
)
def test_problems_name_their_path(local: dict[str, Any], expected: list[str]) -> None:
    assert problems(with_local(local)) == expected


def test_backend_names_are_unique_across_upstreams_and_local() -> None:
    data = with_local({"openai": {"model": "default"}, "smol": {"model": "default"}})
    assert problems(data) == [
        "local.openai: name 'openai' is already an upstream (upstreams.openai); "
        "backend names must be unique"
    ]


def test_unknown_backend_lists_both_kinds() -> None:
    data = with_local({"smol": {"model": "default"}})
    data["models"].append({"name": "x", "backend": "smoll"})
    assert problems(data) == ["models[3].backend: unknown backend 'smoll' (known: openai, smol)"]


def test_passthrough_goes_to_upstreams_only() -> None:
    data = with_local({"smol": {"model": "default"}}, routing={"passthrough_backend": "smol"})
    assert problems(data) == [
        "routing.passthrough_backend: 'smol' is a local backend; passthrough goes to "
        "upstreams only"
    ]


@pytest.mark.parametrize(
    ("fallback", "routing", "expected"),
    [
        ("gpt-4o-mini", None, None),
        ("cheap", None, None),  # an alias
        ("gpt-4-turbo", None, None),  # a pattern
        ("anything", {"default_backend": "openai"}, None),
        (
            "llama",
            None,
            "local.smol.fallback: model 'llama' is not routable (no route matches it and "
            "routing.default_backend is not set)",
        ),
        ("smol", None, "local.smol.fallback: model 'smol' routes back to local backend 'smol'"),
    ],
)
def test_fallback_must_be_a_routable_model(
    fallback: str, routing: dict | None, expected: str | None
) -> None:
    data = with_local({"smol": {"model": "default", "fallback": fallback}})
    if routing:
        data["routing"] = routing
    if expected is None:
        assert parse_config(data, {}).local["smol"].fallback == fallback
    else:
        assert problems(data) == [expected]


def test_fallback_to_another_local_backend() -> None:
    data = with_local({"smol": {"model": "default", "fallback": "big"},
                       "bigger": {"model": "big.gguf"}})
    data["models"].append({"name": "big", "backend": "bigger"})
    assert parse_config(data, {}).local["smol"].fallback == "big"


def test_problems_under_local_name_the_env_var() -> None:
    env = {"LLM_GATEWAY__LOCAL__SMOL__MAX_QUEUE": "0"}
    assert problems(with_local({"smol": {"model": "default"}}), env) == [
        "LLM_GATEWAY__LOCAL__SMOL__MAX_QUEUE (local.smol.max_queue): must be >= 1, got 0"
    ]


def test_discovered_workers_spawn_nothing() -> None:
    local = parse_config(with_local({"smol": {
        "model": "default", "discovery": "dns://llm-worker:8090"}}), {}).local["smol"]
    assert (local.spawns, local.worker_count, local.discovery_interval_seconds) == (
        False, 0, 5.0)


@pytest.mark.parametrize(("discovery", "problem"), [
    ("llm-worker:8090", "must be dns://name[:port] (e.g. dns://llm-worker:8090)"),
    ("dns://", "has no host name"),
    ("dns://llm-worker:http", "has an invalid port"),
    ("dns://llm-worker:8090/v1", "must be dns://name[:port], nothing more"),
])
def test_discovery_must_be_a_dns_name(discovery: str, problem: str) -> None:
    data = with_local({"smol": {"model": "default", "discovery": discovery}})
    assert problems(data) == [f"local.smol.discovery: {problem}"]


def test_discovery_excludes_urls_workers_and_gpus() -> None:
    data = with_local({"smol": {"model": "default", "discovery": "dns://llm-worker",
                                "urls": ["http://10.0.0.7:8090"], "workers": 2, "gpus": [0]}})
    why = "not allowed with discovery (the workers are the addresses its DNS name resolves to)"
    assert problems(data) == [f"local.smol.{key}: {why}" for key in ("urls", "workers", "gpus")]
