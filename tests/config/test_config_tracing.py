"""The `tracing:` section: defaults, checks with their paths, and export headers from env."""

from __future__ import annotations

import pytest

from llm_gateway.config import ConfigError, parse_config
from llm_gateway.tracing.build import export_headers


def _problems(tracing: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"tracing": tracing}, env={})
    return caught.value.problems


def test_off_by_default_with_the_collectors_usual_address():
    cfg = parse_config({}, env={}).tracing
    assert not cfg.enabled and cfg.worker_args() == ()
    assert cfg.export_endpoint() == "http://127.0.0.1:4318/v1/traces"
    grpc = parse_config({"tracing": {"protocol": "grpc"}}, env={}).tracing
    assert grpc.export_endpoint() == "http://127.0.0.1:4317"


def test_unknown_keys_and_bad_values_name_their_path():
    problems = _problems({"enabeld": True, "sample_ratio": 1.5, "protocol": "thrift",
                          "endpoint": "collector:4318"})
    text = "\n".join(problems)
    assert "tracing.enabeld: unknown key (expected one of: enabled," in text
    assert "tracing.sample_ratio: must be <= 1, got 1.5" in text
    assert "tracing.protocol: expected one of 'http', 'grpc'" in text
    assert "tracing.endpoint: must start with http:// or https://" in text


def test_header_values_come_from_the_environment_never_the_file():
    problems = _problems({"headers_env": {"authorization": "Bearer abc.def"}})
    assert len(problems) == 1
    assert problems[0].startswith("tracing.headers_env: 'authorization': the value must be "
                                  "the NAME of an environment variable")
    assert "abc.def" not in problems[0]  # a pasted secret is not echoed
    cfg = parse_config({"tracing": {"enabled": True, "headers_env": {
        "Authorization": "OTEL_COLLECTOR_TOKEN", "x-team": "UNSET_VARIABLE"}}}, env={}).tracing
    assert export_headers(cfg, {"OTEL_COLLECTOR_TOKEN": "Bearer t0k"}) == {
        "authorization": "Bearer t0k"}
    # Spawned workers get the variable's NAME: they read the value from their own env.
    args = cfg.worker_args()
    assert "Authorization=OTEL_COLLECTOR_TOKEN" in args and "Bearer t0k" not in args
