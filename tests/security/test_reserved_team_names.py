"""Team names are plain and never a metrics label's reserved value (`none`: no team, `other`:
teams folded away), whether declared in the config, created by the admin API or the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llm_gateway.cli.main import main
from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config
from gateway_support import ENV

BAD_NAMES = ["none", "None", "other", "OTHER", "a" * 65, "two words", "-dash", "x/y", ""]


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = gateway_env()
    config = keys_config(fake.url, str(tmp_path_factory.mktemp("teams")))
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server


@pytest.mark.parametrize("name", BAD_NAMES)
def test_admin_api_refuses_reserved_and_odd_names(gw, name):
    api = Admin(gw)
    reply = api("POST", "/admin/teams", json={"name": name})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "name"
    listed = api("GET", "/admin/teams").json()["data"]
    assert name not in {t["name"] for t in listed}


def test_admin_api_still_takes_plain_names(gw):
    reply = Admin(gw)("POST", "/admin/teams", json={"name": "none-of-the-above"})
    assert reply.status_code == 201, reply.text


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n])
def test_config_refuses_reserved_and_odd_names(fake, name):
    with pytest.raises(ConfigError) as caught:
        parse_config(keys_config(fake.url, "/tmp/unused", teams={name: {}}), env=ENV)
    assert "teams." in str(caught.value)


def test_config_still_takes_plain_names(fake):
    config = parse_config(keys_config(fake.url, "/tmp/unused", teams={"ml.research_2": {}}),
                          env=ENV)
    assert "ml.research_2" in config.teams


def test_cli_refuses_a_reserved_name(fake, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(keys_config(fake.url, str(tmp_path / "data"))))
    assert main(["teams", "create", "--config", str(path), "none"]) == 1
    assert "reserved" in capsys.readouterr().err
    assert main(["teams", "show", "--config", str(path), "none"]) == 1
