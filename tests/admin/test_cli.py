"""`llm-gateway keys ...` and `llm-gateway teams ...` on the database the config names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import yaml

from llm_gateway.cli.main import main
from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import gateway_env, keys_config


@pytest.fixture
def config_file(fake, tmp_path: Path, monkeypatch) -> Path:
    # The session's storage override would send the CLI to another database.
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(keys_config(fake.url, str(tmp_path / "data"))))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_keys_commands(config_file, capsys):
    cfg = ("--config", str(config_file))
    created = run_json(capsys, "keys", "create", *cfg, "--team", "research", "--name", "alice",
                       "--models", "gpt-4o-mini,gpt-4o", "--rpm", "10", "--tpm", "1000",
                       "--budget-tokens", "5000", "--budget-cost", "2.5", "--period", "day",
                       "--expires", "2099-12-31")
    key_id = created["id"]
    assert created["key"].startswith("sk-lgw-") and created["models"] == ["gpt-4o-mini",
                                                                          "gpt-4o"]
    assert created["limits"] == {"rpm": 10, "tpm": 1000}
    assert created["budget"] == {"tokens": 5000, "cost": 2.5, "period": "day"}
    assert created["expires_at"] == 4102358400

    listed = run_json(capsys, "keys", "list", *cfg, "--team", "research")["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    assert run_json(capsys, "keys", "disable", *cfg, key_id)["status"] == "disabled"
    assert run_json(capsys, "keys", "list", *cfg)["data"] == []
    assert len(run_json(capsys, "keys", "list", *cfg, "--all")["data"]) == 1
    assert run_json(capsys, "keys", "enable", *cfg, key_id)["status"] == "active"
    assert run_json(capsys, "keys", "update", *cfg, key_id, "--rpm", "3")["limits"]["rpm"] == 3
    rotated = run_json(capsys, "keys", "rotate", *cfg, key_id)
    assert rotated["id"] == key_id and rotated["key"] != created["key"]
    assert run_json(capsys, "keys", "revoke", *cfg, key_id)["status"] == "revoked"
    assert run_json(capsys, "keys", "show", *cfg, key_id)["status"] == "revoked"

    code, _, err = run(capsys, "keys", "revoke", *cfg, key_id)
    assert code == 1 and "revoked" in err
    code, _, err = run(capsys, "keys", "create", *cfg, "--name", "x", "--team", "ghost")
    assert code == 1 and "Unknown team" in err
    code, _, err = run(capsys, "keys", "create", *cfg, "--name", "x", "--expires", "soonish")
    assert code == 1 and "expires_at" in err


def test_tables_and_the_key_shown_once(config_file, capsys):
    cfg = ("--config", str(config_file))
    code, out, err = run(capsys, "keys", "create", *cfg, "--name", "bob")
    assert code == 0 and "shown this once" in err
    key = out.strip().splitlines()[-1]
    assert key.startswith("sk-lgw-")
    code, out, _ = run(capsys, "keys", "list", *cfg)
    assert code == 0 and "bob" in out and key not in out and key[-4:] in out
    code, out, _ = run(capsys, "teams", "list", *cfg)
    assert code == 0 and "research" in out and "config" in out


def test_teams_commands(config_file, capsys):
    cfg = ("--config", str(config_file))
    team = run_json(capsys, "teams", "create", *cfg, "ml", "--models", "gpt-*", "--rpm", "30",
                    "--budget-cost", "100", "--upstream-key", "openai=ML_OPENAI_KEY",
                    "--project", "openai=proj_ml", "--coalesce", "off", "--shared-cache")
    assert team["upstreams"] == {"openai": {"api_key_env": "ML_OPENAI_KEY",
                                            "organization": None, "project": "proj_ml"}}
    assert team["grouping"] == {"coalesce": "off", "shared_cache": True}
    updated = run_json(capsys, "teams", "update", *cfg, "ml", "--organization", "openai=org_1",
                       "--tpm", "500")
    assert updated["upstreams"]["openai"] == {"api_key_env": "ML_OPENAI_KEY",
                                              "organization": "org_1", "project": "proj_ml"}
    assert updated["limits"] == {"rpm": None, "tpm": 500}
    run_json(capsys, "keys", "create", *cfg, "--name", "k", "--team", "ml")
    shown = run_json(capsys, "teams", "show", *cfg, "ml")
    assert [k["name"] for k in shown["keys"]] == ["k"]
    names = {t["name"]: t for t in run_json(capsys, "teams", "list", *cfg)["data"]}
    assert names["ml"]["key_count"] == 1 and names["research"]["source"] == "config"
    code, _, err = run(capsys, "teams", "update", *cfg, "research", "--rpm", "1")
    assert code == 1 and "read-only" in err
    code, _, err = run(capsys, "teams", "create", *cfg, "ml")
    assert code == 1 and "already exists" in err


def test_a_cli_key_works_on_the_gateway(fake, config_file, tmp_path):
    """The CLI and a running gateway share the database and the generated hashing secret."""
    made = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "keys", "create", "--config", str(config_file),
         "--name", "from-cli", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True)
    key = json.loads(made.stdout)["key"]
    env = gateway_env()
    config = parse_config(yaml.safe_load(config_file.read_text()), env=env)
    with GatewayServer(config, env=env) as server:
        client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
