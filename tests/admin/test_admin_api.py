"""The admin API under /admin/: guarded by the admin key, every endpoint, OpenAI-shaped errors."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from auth_support import ADMIN_KEY, Admin, gateway_env, keys_config

ADMIN_KEY_PREFIX = ADMIN_KEY[:-4]  # a prefix of the real one is still wrong


def error_of(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/admin/keys"), ("GET", "/admin/keys"), ("GET", "/admin/keys/key_0123456789ab"),
    ("PATCH", "/admin/keys/key_0123456789ab"), ("DELETE", "/admin/keys/key_0123456789ab"),
    ("POST", "/admin/keys/key_0123456789ab/rotate"), ("POST", "/admin/teams"),
    ("GET", "/admin/teams"), ("GET", "/admin/teams/research"),
    ("PATCH", "/admin/teams/research"), ("GET", "/admin/usage"),
])
def test_every_endpoint_needs_the_admin_key(gw, method, path):
    for key in (None, "wrong-admin-key", ADMIN_KEY_PREFIX):
        error = error_of(Admin(gw, key)(method, path, json={}), 401)
        assert error["code"] == "invalid_api_key"


def test_admin_api_is_off_without_an_admin_key(fake, tmp_path):
    env = gateway_env(admin_key=None)
    config = parse_config(keys_config(fake.url, str(tmp_path)), env=env)
    with GatewayServer(config, env=env) as server:
        error = error_of(Admin(server, "anything")("GET", "/admin/keys"), 403)
        assert error["code"] == "admin_disabled" and "LLM_GATEWAY_ADMIN_KEY" in error["message"]


def test_a_gateway_key_is_not_an_admin_key(gw, api):
    key = api("POST", "/admin/keys", json={"name": "k"}).json()["key"]
    error_of(Admin(gw, key)("GET", "/admin/keys"), 401)


def test_keys_lifecycle(gw, api):
    created = api("POST", "/admin/keys", json={
        "name": "ci bot", "team": "research", "models": ["gpt-4o-mini"],
        "limits": {"rpm": 5}, "budget": {"tokens": 1000, "period": "day"},
        "expires_at": "30d"})
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    body = created.json()
    key_id, key = body["id"], body["key"]
    assert body["object"] == "gateway.key" and body["status"] == "active"
    assert body["redacted_key"] == f"sk-lgw-...{key[-4:]}"
    assert body["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)

    shown = api("GET", f"/admin/keys/{key_id}").json()
    assert "key" not in shown and shown["limits"] == {"rpm": 5, "tpm": None}
    assert key_id in [k["id"] for k in api("GET", "/admin/keys",
                                           params={"team": "research"}).json()["data"]]
    assert key_id not in [k["id"] for k in api("GET", "/admin/keys",
                                               params={"team": "other"}).json()["data"]]

    changed = api("PATCH", f"/admin/keys/{key_id}", json={
        "name": "renamed", "disabled": True, "budget": None, "expires_at": "2099-01-01"}).json()
    assert changed["name"] == "renamed" and changed["status"] == "disabled"
    assert changed["budget"] is None and changed["expires_at"] == 4070908800
    ids = [k["id"] for k in api("GET", "/admin/keys").json()["data"]]
    assert key_id not in ids
    every = api("GET", "/admin/keys", params={"include_disabled": "true"}).json()["data"]
    assert key_id in [k["id"] for k in every]
    api("PATCH", f"/admin/keys/{key_id}", json={"disabled": False})

    rotated = api("POST", f"/admin/keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != key and rotated["name"] == "renamed"
    client = openai.OpenAI(base_url=gw.url, api_key=rotated["key"], max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini",
                                   messages=[{"role": "user", "content": "x"}])

    revoked = api("DELETE", f"/admin/keys/{key_id}").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert error_of(api("POST", f"/admin/keys/{key_id}/rotate"), 409)["code"] == "key_revoked"
    assert error_of(api("GET", "/admin/keys/key_000000000000"), 404)["code"] == "key_not_found"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "name"),
    ({"name": 5}, "name"),
    ({"name": "x", "limits": {"rpm": 0}}, "limits.rpm"),
    ({"name": "x", "limits": {"rps": 1}}, "limits"),
    ({"name": "x", "budget": {"period": "week"}}, "budget.period"),
    ({"name": "x", "models": "gpt-4o"}, "models"),
    ({"name": "x", "team": "nope"}, "team"),
    ({"name": "x", "expires_at": "soon"}, "expires_at"),
    ({"name": "x", "expires_at": 1000}, "expires_at"),
    ({"name": "x", "key": "sk-lgw-mine"}, None),
])
def test_invalid_key_bodies_are_openai_shaped_400s(api, body, param):
    error = error_of(api("POST", "/admin/keys", json=body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_bad_json_and_bad_flags(api):
    assert error_of(api("POST", "/admin/keys", content=b"{nope"), 400)["code"] == "invalid_json"
    error_of(api("GET", "/admin/keys", params={"include_disabled": "maybe"}), 400)


def test_teams(gw, api):
    listed = {t["name"]: t for t in api("GET", "/admin/teams").json()["data"]}
    assert listed["research"]["source"] == "config"
    assert listed["research"]["limits"] == {"rpm": 60, "tpm": None}

    created = api("POST", "/admin/teams", json={
        "name": "platform", "models": ["gpt-*"], "budget": {"cost": 25.5},
        "upstreams": {"openai": {"api_key_env": "PLATFORM_OPENAI_KEY", "project": "proj_p"}},
        "grouping": {"coalesce": "off"}})
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["source"] == "api" and team["budget"] == {"tokens": None, "cost": 25.5,
                                                          "period": "month"}
    error_of(api("POST", "/admin/teams", json={"name": "platform"}), 409)
    error_of(api("POST", "/admin/teams", json={"name": "research"}), 409)
    error_of(api("POST", "/admin/teams", json={"name": "bad name"}), 400)
    error = error_of(api("POST", "/admin/teams", json={
        "name": "leaky", "upstreams": {"openai": {"api_key_env": "sk-proj-pasted"}}}), 400)
    assert "sk-proj-pasted" not in error["message"]

    key_id = api("POST", "/admin/keys", json={"name": "p1", "team": "platform"}).json()["id"]
    shown = api("GET", "/admin/teams/platform").json()
    assert [k["id"] for k in shown["keys"]] == [key_id] and "key" not in shown["keys"][0]

    updated = api("PATCH", "/admin/teams/platform", json={"models": [], "limits": {"tpm": 9}})
    assert updated.json()["models"] == [] and updated.json()["limits"]["tpm"] == 9
    assert updated.json()["budget"]["cost"] == 25.5
    error = error_of(api("PATCH", "/admin/teams/research", json={"models": []}), 409)
    assert error["code"] == "team_read_only"
    error_of(api("PATCH", "/admin/teams/ghost", json={"models": []}), 404)
    error_of(api("GET", "/admin/teams/ghost"), 404)
    error_of(api("PATCH", "/admin/teams/platform", json={"name": "renamed"}), 400)


def test_usage(gw, api):
    key = api("POST", "/admin/keys", json={"name": "u", "team": "research"}).json()
    client = openai.OpenAI(base_url=gw.url, api_key=key["key"], max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "count me"}])
    rows: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = api("GET", "/admin/usage",
                   params={"key_id": key["id"], "group_by": "model"}).json()["data"]
        if rows and rows[0]["requests"] == 2:
            break
        time.sleep(0.05)
    assert rows[0]["model"] == "gpt-4o-mini" and rows[0]["requests"] == 2
    assert rows[0]["completion_tokens"] > 0
    by_team = api("GET", "/admin/usage", params={"group_by": "team", "since": "1d"}).json()
    assert "research" in [r["team"] for r in by_team["data"]]
    # No route here has deployments: the key's calls are one row without one.
    by_deployment = api("GET", "/admin/usage",
                        params={"key_id": key["id"], "group_by": "deployment"}).json()["data"]
    assert [(r["deployment"], r["requests"], r["retried_requests"], r["fallback_requests"])
            for r in by_deployment] == [(None, 2, 0, 0)]
    assert by_team["since"] == pytest.approx(time.time() - 86400, abs=60)
    future = api("GET", "/admin/usage", params={"since": "2099-01-01"}).json()["data"]
    assert future[0]["requests"] == 0
    error_of(api("GET", "/admin/usage", params={"group_by": "colour"}), 400)
    error_of(api("GET", "/admin/usage", params={"since": "whenever"}), 400)
    error_of(api("GET", "/admin/usage", params={"since": "2025-02-01",
                                                 "until": "2025-01-01"}), 400)
