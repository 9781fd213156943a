"""GET /admin/models and `llm-gateway models`: every local model, loaded or not, with its
memory; each device's budget. The on-demand model here is never asked for, so no worker
runs: what is shown is the model as configured and estimated."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from llm_gateway.backends.memory import model_file
from llm_gateway.cli.main import main
from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, Admin, gateway_env
from gateway_support import gateway_config


@pytest.fixture(scope="module")
def gw(fake) -> Iterator[GatewayServer]:
    config = gateway_config(
        fake.url,
        local={"later": {"model": "default", "load": "on_demand", "idle_unload_seconds": 60,
                         "n_ctx": 512, "parallel": 1},
               "far": {"model": "default", "urls": ["http://127.0.0.1:9"]}},
        placement={"cpu_memory_mib": 4096, "nvml": "off",
                   "groups": {"g": {"models": ["later"], "mode": "together"}}},
    )
    config["models"] += [{"name": "later", "backend": "later"}, {"name": "far", "backend": "far"}]
    env = gateway_env()
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        yield server


def test_the_admin_key_is_required(gw: GatewayServer) -> None:
    reply = Admin(gw, key=None)("GET", "/admin/models")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"


def test_every_local_model_is_shown_loaded_or_not(gw: GatewayServer) -> None:
    reply = Admin(gw)("GET", "/admin/models")
    assert reply.status_code == 200 and reply.headers["cache-control"] == "no-store"
    listing = reply.json()
    models = {m["model"]: m for m in listing["data"]}
    later = models["later"]
    assert (later["load"], later["state"], later["workers"], later["workers_ready"]) == (
        "on_demand", "unloaded", 1, 0)
    assert (later["loads"], later["last_used"], later["loaded_at"], later["used_mib"]) == (
        0, None, None, None)
    assert later["idle_unload_seconds"] == 60 and later["groups"] == ["g"]
    if model_file("default") is not None:  # estimated from the GGUF header
        assert later["memory_source"] == "estimate" and 150 < later["estimated_mib"] < 400
        assert later["memory"]["cpu"]["estimated_mib"] == later["estimated_mib"]
    far = models["far"]
    assert (far["load"], far["state"], far["estimated_mib"]) == ("external", "unavailable", None)
    assert listing["devices"] == [{"device": "cpu", "budget_mib": 4096, "booked_mib": 0,
                                   "total_mib": None, "used_mib": None}]
    # Listed for clients too, though nothing of it runs.
    ids = {m["id"] for m in httpx.get(gw.url + "/models").json()["data"]}
    assert {"later", "far"} <= ids


def test_the_cli_shows_what_the_api_does(gw: GatewayServer, capsys, monkeypatch) -> None:
    monkeypatch.setenv("LLM_GATEWAY_ADMIN_KEY", ADMIN_KEY)
    assert main(["models", "--url", gw.base, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data"] == Admin(gw)("GET", "/admin/models").json()["data"]
    monkeypatch.setenv("COLUMNS", "200")  # rich folds cells to the terminal's width
    assert main(["models", "--url", gw.base]) == 0
    table = capsys.readouterr().out
    assert "later" in table and "on_demand" in table and "unloaded" in table
    assert "far" in table and "external" in table and "4,096" in table


def test_the_cli_says_what_went_wrong(gw: GatewayServer, capsys, monkeypatch) -> None:
    monkeypatch.delenv("LLM_GATEWAY_ADMIN_KEY", raising=False)
    assert main(["models", "--url", gw.base]) == 2
    assert "set LLM_GATEWAY_ADMIN_KEY" in capsys.readouterr().err
    monkeypatch.setenv("LLM_GATEWAY_ADMIN_KEY", "not-the-key")
    assert main(["models", "--url", gw.base]) == 1
    assert "answered 401: Missing or incorrect admin key." in capsys.readouterr().err
    assert main(["models", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
