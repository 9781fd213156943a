"""Loading from files: load_config, check_file, YAML errors, and the shipped example."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.config import Config, ConfigError, check_file, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"

GOOD = """\
upstreams:
  openai:
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
  local:
    base_url: http://127.0.0.1:8000/v1
models:
  - {name: gpt-4o, backend: openai}
  - {name: llama, backend: local, upstream_model: meta-llama/Llama-3.1-8B-Instruct}
  - {name: "gpt-*", backend: openai}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(path: Path | str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.problems


def test_load_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(path, {})
    assert isinstance(config, Config)
    assert config.source == str(path)
    assert list(config.upstreams) == ["openai", "local"]
    assert config.models[1].upstream_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert load_config(str(path), {}) == config


def test_env_overrides_apply_to_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), {"LLM_GATEWAY__SERVER__PORT": "9000"})
    assert config.server.port == 9000


def test_path_from_env_var(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(None, {"LLM_GATEWAY_CONFIG": str(path)})
    assert config.source == str(path)
    assert "local" in config.upstreams


def test_no_path_means_default(tmp_path: Path) -> None:
    assert load_config(None, {}).source == "<default>"
    assert load_config(None, {"LLM_GATEWAY_CONFIG": ""}).source == "<default>"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_GATEWAY_CONFIG", str(write(tmp_path, GOOD)))
    monkeypatch.setenv("LLM_GATEWAY__SERVER__WORKERS", "3")
    config = load_config()
    assert "local" in config.upstreams
    assert config.server.workers == 3


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), {})
    assert config.upstreams == {} and config.models == []
    assert load_config(write(tmp_path, "# only a comment\n", "c.yaml"), {}).models == []


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert load_problems(path) == [f"{path}: no such file"]
    assert load_problems(str(path), {"LLM_GATEWAY_CONFIG": "ignored"}) == [f"{path}: no such file"]


def test_unreadable_path(tmp_path: Path) -> None:
    [problem] = load_problems(tmp_path)
    assert problem.startswith(f"{tmp_path}: cannot read (")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"server: {host: \xe9}\n")
    assert load_problems(bad) == [f"{bad}: not valid UTF-8 text"]


def test_missing_file_from_env_var(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"LLM_GATEWAY_CONFIG": str(path)})
    assert str(info.value) == f"{path}: no such file"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n  host: [unclosed\n")
    [problem] = load_problems(path)
    assert problem.startswith(f"{path}: invalid YAML at line ")
    bad_indent = write(tmp_path, "server:\n  port: 1\n bad: 2\n", "indent.yaml")
    [problem] = load_problems(bad_indent)
    assert problem.startswith(f"{bad_indent}: invalid YAML at line 3, column 2: ")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert load_problems(path) == [f"{path}: top level must be a mapping, got a list"]


def test_duplicate_yaml_keys_reported_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 1\n  port: 2\nrouting: {}\nrouting: {}\n")
    assert load_problems(path) == [
        f"{path}:3: duplicate key 'port'",
        f"{path}:5: duplicate key 'routing'",
    ]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = """\
x-common: &common {timeouts: {read: 30}}
upstreams:
  a: {<<: *common, base_url: "http://a"}
"""
    # x-common is not a key the schema knows; merge keys themselves are not duplicates.
    assert load_problems(write(tmp_path, text)) == [
        "x-common: unknown key "
        "(expected one of: server, upstreams, local, placement, models, routing, metrics, auth, "
            "teams, limits, storage, accounting, grouping, console, tracing)"
    ]


def test_file_problems_collected(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "server: {port: abc, workers: 0}\n")
    assert load_problems(path) == [
        "server.port: expected an integer, got 'abc' (str)",
        "server.workers: must be >= 1, got 0",
    ]


def test_check_file_ok(tmp_path: Path) -> None:
    assert check_file(write(tmp_path, GOOD), {}) == (True, "ok: 2 upstreams, 3 model routes")
    one = write(
        tmp_path, "upstreams: {a: {base_url: 'http://a'}}\nmodels: [{name: m, backend: a}]\n"
    )
    assert check_file(one, {}) == (True, "ok: 1 upstream, 1 model route")


def test_check_file_bad(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("backend: local", "backend: locl") + "server: {prot: 1}\n")
    ok, message = check_file(path, {})
    assert not ok
    lines = message.splitlines()
    assert lines[0] == f"{path}: 2 problems"
    assert lines[1].startswith("  server.prot: unknown key")
    assert lines[2] == "  models[1].backend: unknown backend 'locl' (known: openai, local)"


def test_check_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert check_file(path, {}) == (False, f"{path}: 1 problem\n  {path}: no such file")


def test_example_file_loads() -> None:
    ok, message = check_file(EXAMPLE, {})
    assert ok, message
    config = load_config(EXAMPLE, {})
    assert set(config.upstreams) == {"openai", "local", "azure-east", "anthropic"}
    assert config.upstreams["local"].base_url == "http://127.0.0.1:8000/v1"
    by_name = {m.name: m for m in config.models}
    assert by_name["gpt-4o-mini"].aliases == ["gpt-3.5-turbo"]
    assert any(m.is_pattern for m in config.models)
    assert any(m.upstream_model for m in config.models)


def test_example_file_shows_every_key() -> None:
    from dataclasses import fields, is_dataclass

    from llm_gateway.config import schema

    text = EXAMPLE.read_text(encoding="utf-8")
    for cls in vars(schema).values():
        if isinstance(cls, type) and is_dataclass(cls):
            for f in fields(cls):
                if f.metadata.get("yaml", True):
                    assert f"{f.name}:" in text, f"{cls.__name__}.{f.name} not in the example"
