"""auth.mode keys end to end: a real gateway, the fake upstream and the official SDK."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from llm_gateway.cli.main import main as cli

from auth_support import ADMIN_KEY, Admin, new_key
from services import fresh_postgres_database

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)


def chat(server, key: str, model: str = "gpt-4o-mini"):
    return sdk(server, key).chat.completions.create(model=model, messages=MESSAGES)


def refused(server, key: str | None) -> dict:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    reply = httpx.post(f"{server.url}/chat/completions", headers=headers,
                       json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert reply.status_code == 401, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    return error


def test_missing_wrong_disabled_revoked_and_rotated_keys_get_401(keys_gateway, fake):
    gw = keys_gateway()
    key_id, key = new_key(gw)
    assert chat(gw, key).choices[0].message.content == "Echo: hello"
    assert "provide an API key" in refused(gw, None)["message"]
    wrong = "sk-lgw-" + "A" * 43
    assert wrong not in str(refused(gw, wrong)) and "AAAA" not in str(refused(gw, wrong))
    refused(gw, "sk-some-openai-key")
    with pytest.raises(openai.AuthenticationError):
        chat(gw, wrong)

    assert Admin(gw)("PATCH", f"/admin/keys/{key_id}", json={"disabled": True}).is_success
    assert "disabled" in refused(gw, key)["message"]
    assert Admin(gw)("PATCH", f"/admin/keys/{key_id}", json={"disabled": False}).is_success
    chat(gw, key)

    rotated = Admin(gw)("POST", f"/admin/keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != key
    assert refused(gw, key)["message"] == "Incorrect API key provided."
    chat(gw, rotated["key"])

    assert Admin(gw)("DELETE", f"/admin/keys/{key_id}").json()["status"] == "revoked"
    assert "revoked" in refused(gw, rotated["key"])["message"]
    assert fake.calls["POST /v1/chat/completions"] == 3  # refused calls never went up


def test_expired_key_gets_401(keys_gateway):
    gw = keys_gateway()
    _, key = new_key(gw, expires_at=time.time() + 1.0)
    chat(gw, key)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = httpx.get(f"{gw.url}/models", headers={"authorization": f"Bearer {key}"})
        if reply.status_code == 401:
            assert "expired" in reply.json()["error"]["message"]
            return
        time.sleep(0.1)
    pytest.fail("the key never expired")


def test_azure_style_api_key_header(keys_gateway):
    gw = keys_gateway()
    _, key = new_key(gw)
    reply = httpx.post(f"{gw.url}/chat/completions", headers={"api-key": key},
                       json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert reply.status_code == 200


def test_allowed_models_are_enforced_and_listed(keys_gateway):
    gw = keys_gateway()
    _, key = new_key(gw, team="research", models=["gpt-*"])  # team: gpt-4o-mini only
    chat(gw, key, "gpt-4o-mini")
    chat(gw, key, "gpt-3.5-turbo")  # an alias of an allowed model
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(gw, key, "gpt-4o")
    assert err.value.body["code"] == "model_not_allowed" and err.value.body["param"] == "model"
    listed = {m.id for m in sdk(gw, key).models.list()}
    assert "gpt-4o-mini" in listed and "gpt-4o" not in listed and "house-model" not in listed
    with pytest.raises(openai.NotFoundError):
        sdk(gw, key).models.retrieve("gpt-4o")
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gw, key).embeddings.create(model="text-embedding-3-small", input="x")


def test_key_never_at_rest_nor_in_logs(keys_gateway, tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG)
    gw = keys_gateway()
    key_id, key = new_key(gw)
    chat(gw, key)
    chat(gw, key)
    with pytest.raises(openai.NotFoundError):
        chat(gw, key, "no-such-model")
    rotated = Admin(gw)("POST", f"/admin/keys/{key_id}/rotate").json()["key"]
    refused(gw, key)
    gw.stop()  # the ledger flushed, SQLite's WAL checkpointed
    secrets = [key, key[7:], rotated, rotated[7:], ADMIN_KEY]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "gateway.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a key is in {path}"
    # The gateway's own records (the SDK's, in this same process, are the client's business).
    ours = [r for r in caplog.records if r.name.startswith(("llm_gateway", "uvicorn"))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "/v1/chat/completions" in logged  # the request lines were written
    for secret in secrets:
        assert secret not in logged


def test_team_credentials_reach_the_upstream(keys_gateway, open_fake):
    gw = keys_gateway(upstream=open_fake.url, env={"ML_OPENAI_KEY": "sk-ml-team-own"})
    team = {"name": "ml", "upstreams": {"openai": {"api_key_env": "ML_OPENAI_KEY",
                                                   "project": "proj_ml"}}}
    assert Admin(gw)("POST", "/admin/teams", json=team).status_code == 201
    _, key = new_key(gw, team="ml")
    _, plain = new_key(gw)
    chat(gw, key)
    seen = open_fake.requests[-1].headers
    assert seen["authorization"] == "Bearer sk-ml-team-own"
    assert seen["openai-project"] == "proj_ml"
    chat(gw, plain)
    assert open_fake.requests[-1].headers["authorization"] != "Bearer sk-ml-team-own"
    assert key not in str(open_fake.requests)


def test_passthrough_forwards_the_client_key_and_attributes_usage(keys_gateway, open_fake):
    gw = keys_gateway(auth={"mode": "passthrough"}, upstream=open_fake.url,
                      accounting={"flush_seconds": 0.05})
    chat(gw, "sk-client-own-key-1")
    assert open_fake.requests[-1].headers["authorization"] == "Bearer sk-client-own-key-1"
    refused(gw, None)  # a key is still required: the client's own
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline and not rows:
        rows = Admin(gw)("GET", "/admin/usage", params={"group_by": "key"}).json()["data"]
        time.sleep(0.05)
    assert len(rows) == 1 and rows[0]["requests"] == 1
    assert rows[0]["key_id"].startswith("pt_") and len(rows[0]["key_id"]) == 19
    assert "sk-client" not in str(rows)


def test_responses_are_reachable_only_by_their_team(keys_gateway):
    gw = keys_gateway()
    assert Admin(gw)("POST", "/admin/teams", json={"name": "rivals"}).status_code == 201
    _, mine = new_key(gw, team="research")
    _, teammate = new_key(gw, team="research")
    _, theirs = new_key(gw, team="rivals")
    made = sdk(gw, mine).responses.create(model="gpt-4o-mini", input="hi", store=True)
    assert sdk(gw, teammate).responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        sdk(gw, theirs).responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk(gw, theirs).responses.delete(made.id)
    sdk(gw, mine).responses.delete(made.id)


def _cli_config(gw, tmp_path: Path, monkeypatch) -> str:
    # The session's storage override would point the CLI at another database.
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(gw.config_data))
    return str(path)


def test_revocation_elsewhere_waits_for_cache_seconds(keys_gateway, tmp_path, monkeypatch):
    slow = keys_gateway(auth={"cache_seconds": 60})
    quick = keys_gateway(auth={"cache_seconds": 0.2})
    key_id, key = new_key(slow)
    chat(slow, key)
    chat(quick, key)
    assert cli(["keys", "revoke", "--config", _cli_config(slow, tmp_path, monkeypatch),
                key_id, "--format", "json"]) == 0
    chat(slow, key)  # still trusted: cached for 60 s
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chat(quick, key)
        except openai.AuthenticationError as exc:
            assert "revoked" in str(exc)
            return
        time.sleep(0.05)
    pytest.fail("the revocation never reached the gateway with cache_seconds 0.2")


def test_keys_on_postgresql(keys_gateway, tmp_path):
    with fresh_postgres_database() as url:
        gw = keys_gateway(storage={"url": url, "data_dir": str(tmp_path)})
        key_id, key = new_key(gw, team="research")
        chat(gw, key)
        assert Admin(gw)("GET", f"/admin/keys/{key_id}").json()["team"] == "research"
        Admin(gw)("DELETE", f"/admin/keys/{key_id}")
        assert "revoked" in refused(gw, key)["message"]
        gw.stop()  # before the database is dropped
