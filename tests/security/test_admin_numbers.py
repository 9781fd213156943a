"""Numbers out of any sane range are 400s naming the field, refused before anything is stored;
a row already stored with one still lists (admin API and CLI)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llm_gateway.cli.main import main
from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config
from gateway_support import ENV


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("numbers")


@pytest.fixture(scope="module")
def gw(fake, data_dir: Path) -> Iterator[GatewayServer]:
    env = gateway_env()
    with GatewayServer(parse_config(keys_config(fake.url, str(data_dir)), env=env),
                       env=env) as server:
        yield server


@pytest.fixture
def api(gw: GatewayServer) -> Admin:
    return Admin(gw)


def key_count(api: Admin) -> int:
    reply = api("GET", "/admin/keys", params={"include_disabled": "true"})
    assert reply.status_code == 200, reply.text
    return len(reply.json()["data"])


def refused(reply, param: str) -> str:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    return error["message"]


@pytest.mark.parametrize(("fields", "param"), [
    ({"expires_at": 1e20}, "expires_at"),
    ({"expires_at": 1.7e308}, "expires_at"),
    ({"expires_at": "99999999999d"}, "expires_at"),
    ({"limits": {"rpm": 10**13}}, "limits.rpm"),
    ({"limits": {"tpm": 18446744073709551615}}, "limits.tpm"),
    ({"budget": {"tokens": 10**13}}, "budget.tokens"),
    ({"budget": {"cost": 1e300}}, "budget.cost"),
])
def test_key_numbers_out_of_range_are_refused_before_storing(api, fields, param):
    before = key_count(api)
    refused(api("POST", "/admin/keys", json={"name": "big", **fields}), param)
    assert key_count(api) == before  # nothing was stored
    created = api("POST", "/admin/keys", json={"name": "small"})
    key_id = created.json()["id"]
    refused(api("PATCH", f"/admin/keys/{key_id}", json=fields), param)
    assert api("GET", f"/admin/keys/{key_id}").json()["expires_at"] is None


def test_team_numbers_out_of_range_are_refused(api):
    refused(api("POST", "/admin/teams", json={"name": "big-team",
                                               "limits": {"rpm": 10**13}}), "limits.rpm")
    assert api("GET", "/admin/teams/big-team").status_code == 404


@pytest.mark.parametrize(("query", "param"), [
    ({"since": "1e20"}, "since"), ({"until": "1e20"}, "until"), ({"since": "nan"}, "since"),
    ({"since": "inf"}, "since"), ({"until": "-1e300"}, "until"),
    ({"since": "99999999999999d"}, "since"),
])
def test_usage_times_out_of_range_are_400s(api, query, param):
    refused(api("GET", "/admin/usage", params=query), param)


def test_sane_values_still_work(api):
    reply = api("POST", "/admin/keys", json={
        "name": "sane", "expires_at": "9999-01-01", "limits": {"rpm": 10**12, "tpm": 10**12},
        "budget": {"tokens": 10**12, "cost": 1e12}})
    assert reply.status_code == 201, reply.text
    assert api("GET", "/admin/usage", params={"since": "0", "until": "4102444800"}
               ).status_code == 200


def test_a_stored_out_of_range_row_still_lists(api, gw, data_dir, tmp_path, monkeypatch, capsys):
    key_id = api("POST", "/admin/keys", json={"name": "patched"}).json()["id"]
    # What an earlier version stored for `"expires_at": 1e20` (and a limit past the bound).
    with sqlite3.connect(data_dir / "gateway.db") as conn:
        conn.execute("UPDATE auth_keys SET expires_at = ?, limits = ? WHERE id = ?",
                     (1e20, '{"rpm": 100000000000000000, "tpm": null}', key_id))
    gw.app.state.auth.forget()
    listed = api("GET", "/admin/keys")
    assert listed.status_code == 200, listed.text
    shown = next(k for k in listed.json()["data"] if k["id"] == key_id)
    assert shown["status"] == "active" and shown["expires_at"] == 253402300799
    assert api("GET", f"/admin/keys/{key_id}").status_code == 200

    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(keys_config("http://127.0.0.1:9", str(data_dir))))
    for fmt in ("table", "json"):
        assert main(["keys", "list", "--config", str(config), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert key_id in out
    assert main(["keys", "list", "--config", str(config), "--format", "json"]) == 0
    assert key_id in {k["id"] for k in json.loads(capsys.readouterr().out)["data"]}


@pytest.fixture
def cli_config(fake, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(keys_config(fake.url, str(tmp_path / "data"))))
    return path


@pytest.mark.parametrize("flags", [
    ["--rpm", str(10**13)], ["--tpm", str(10**13)], ["--budget-tokens", str(10**13)],
    ["--budget-cost", "nan"], ["--budget-cost", "inf"], ["--expires", "99999999999d"],
])
def test_cli_refuses_numbers_out_of_range(cli_config, capsys, flags):
    cfg = ["--config", str(cli_config)]
    assert main(["keys", "create", *cfg, "--name", "cli", *flags]) == 1
    assert "llm-gateway:" in capsys.readouterr().err
    assert main(["keys", "list", *cfg, "--all", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == []
    if flags[0] != "--expires":  # teams have no expiry
        assert main(["teams", "create", *cfg, "cli-team", *flags]) == 1
        assert main(["teams", "show", *cfg, "cli-team"]) == 1  # not created


@pytest.mark.parametrize("since", ["99999999999999d", "0001-01-01T00:00:00+01:00"])
def test_cli_usage_refuses_times_out_of_range(cli_config, capsys, since):
    assert main(["usage", "--config", str(cli_config), "--since", since]) == 2
    assert "since" in capsys.readouterr().err


@pytest.mark.parametrize("section", [
    {"teams": {"t": {"limits": {"rpm": 10**13}}}},
    {"teams": {"t": {"budget": {"cost": 1e13}}}},
    {"limits": {"key_default": {"tpm": 10**13}}},
])
def test_config_limits_are_bounded_too(section):
    with pytest.raises(ConfigError):
        parse_config(section, env=ENV)
