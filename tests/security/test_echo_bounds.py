"""Strings a client chooses are never echoed whole: a model name longer than 256 characters is
a 400 before routing, and model names, ids, paths and field names are clipped (head kept, the
length said) in error messages, the request log line, metric labels and ledger records."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from llm_gateway.accounting.record import UsageRecord
from llm_gateway.app.logs import JsonFormatter
from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config

ACCESS = "llm_gateway.access"
HUGE = "x" * 500_000
BOUND = 1_000  # an error message or a log field may say what was sent, not repeat it


def chat(gw: GatewayServer, model: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/chat/completions", timeout=10, json={
        "model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": "Bearer sk-client-key"})


def access_lines(caplog, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while True:  # a line is written just after the response's last byte
        records = [r for r in caplog.records if r.name == ACCESS]
        if len(records) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return [json.loads(JsonFormatter().format(r)) for r in records]


def test_a_huge_model_name_is_a_400_that_does_not_repeat_it(caplog, make_gateway):
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = make_gateway()
    reply = chat(gw, HUGE)
    assert reply.status_code == 400, reply.text[:300]
    assert len(reply.content) < BOUND
    error = reply.json()["error"]
    assert error["param"] == "model" and "500000" in error["message"]
    [line] = access_lines(caplog, 1)
    assert len(JsonFormatter().format(caplog.records[-1])) < BOUND, line
    metrics = httpx.get(f"{gw.base}/metrics", timeout=10).text
    assert "x" * 300 not in metrics


@pytest.mark.parametrize(("length", "status"), [(256, 200), (257, 400)])
def test_the_model_name_bound(make_gateway, length, status):
    gw = make_gateway()
    model = "gpt-" + "y" * (length - 4)  # `gpt-*` routes it to the fake upstream
    assert chat(gw, model).status_code == status


def test_ids_and_paths_are_clipped_in_errors_and_log_lines(caplog, make_gateway):
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = make_gateway()
    reply = httpx.get(f"{gw.url}/models/{'m' * 20_000}", timeout=10,
                      headers={"authorization": "Bearer sk-client-key"})
    assert reply.status_code == 404, reply.text[:300]
    assert len(reply.content) < BOUND
    assert "20000 characters" in reply.json()["error"]["message"]
    [line] = access_lines(caplog, 1)
    assert len(line["path"]) < BOUND and line["path"].startswith("/v1/models/mmm")


def test_admin_field_names_are_clipped(fake, tmp_path):
    env = gateway_env()
    with GatewayServer(parse_config(keys_config(fake.url, str(tmp_path)), env=env),
                       env=env) as gw:
        reply = Admin(gw)("POST", "/admin/keys", json={"name": "k", "f" * 100_000: 1})
        assert reply.status_code == 400
        assert len(reply.content) < BOUND
        reply = Admin(gw)("GET", f"/admin/keys/key_{'k' * 50_000}")
        assert reply.status_code == 404 and len(reply.content) < BOUND


def test_ledger_rows_hold_clipped_names():
    record = UsageRecord(request_id="req_1", time=0.0, key_id=None, team=None,
                         model="z" * 100_000, served_model="z" * 100_000, backend="openai")
    row = record.row()
    assert all(len(v) < BOUND for v in row if isinstance(v, str))
    assert row[4].startswith("z" * 256) and "100000 characters" in row[4]


def test_the_passthrough_bounds_a_body_model_and_a_path_alike(make_gateway):
    gw = make_gateway()
    reply = httpx.post(f"{gw.url}/images/generations", timeout=10,
                       json={"model": HUGE, "prompt": "a cat"},
                       headers={"authorization": "Bearer sk-client-key"})
    assert reply.status_code == 400, reply.text[:300]
    assert len(reply.content) < BOUND and reply.json()["error"]["param"] == "model"
    # An unknown path is echoed clipped.
    reply = httpx.get(f"{gw.base}/nowhere/" + "p" * 30_000, timeout=10)
    assert reply.status_code == 404 and len(reply.content) < BOUND
