"""`coalesce: off` written unquoted in a YAML file (YAML 1.1 reads it as false) means "off", at
every level: the gateway's setting, a model's, a team's, and an environment override."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.config import ConfigError, load_config

CONFIG = """\
upstreams:
  openai: {base_url: "https://api.openai.com/v1"}
models:
  - {name: gpt-4o-mini, backend: openai}
grouping:
  coalesce: off
  models:
    gpt-4o-mini:
      coalesce: off
teams:
  research:
    grouping:
      coalesce: off
"""


def test_unquoted_off_is_off_everywhere(tmp_path: Path):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    config = load_config(path, env={})
    assert config.grouping.coalesce == "off"
    assert config.grouping.models["gpt-4o-mini"].coalesce == "off"
    assert config.teams["research"].grouping.coalesce == "off"


def test_unquoted_off_from_the_environment(tmp_path: Path):
    path = tmp_path / "gateway.yaml"
    path.write_text("grouping:\n  coalesce: all\n")
    config = load_config(path, env={"LLM_GATEWAY__GROUPING__COALESCE": "off"})
    assert config.grouping.coalesce == "off"


def test_unquoted_on_says_to_quote(tmp_path: Path):
    # There is no "on" mode; the message must say why `true` appeared in the first place.
    path = tmp_path / "gateway.yaml"
    path.write_text("grouping:\n  coalesce: on\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "grouping.coalesce" in str(caught.value) and "quote" in str(caught.value)

