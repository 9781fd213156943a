"""Azure OpenAI upstreams: whose credentials go there, and what the ledger counts."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import openai
import pytest
from accounting.stream_usage_support import ledger_row

from llm_gateway.testing.fake_azure import FakeAzure

from auth_support import gateway_env, keys_config, new_key
from azure_support import AZURE_KEY, ENTRA_TOKEN, azure_config, gateways, last, sdk

TEAM_KEY = "team-ml-azure-key-3"


@pytest.fixture(scope="module")
def fake():
    """Takes any credential, and records which one it got."""
    with FakeAzure() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeAzure) -> None:
    fake.reset()


@pytest.fixture
def started():
    yield from gateways()


def _env(**more: str) -> dict[str, str]:
    # Each gateway here keeps its data in its test's tmp_path.
    return gateway_env(LGW_TEST_AZURE_KEY=AZURE_KEY, LGW_TEST_AZURE_TOKEN=ENTRA_TOKEN, **more)


def _keys_mode(fake: FakeAzure, tmp_path: Path, auth: dict | None = None, **azure) -> dict:
    own = azure_config(fake.url, **azure)
    return keys_config(fake.url, str(tmp_path), auth, upstreams=own["upstreams"],
                       models=own["models"], teams={"ml": {"upstreams": {"azure": {
                           "api_key_env": "ML_AZURE_KEY", "organization": "org-ml",
                           "project": "proj-ml"}}}})


def test_a_teams_own_key_replaces_ours_in_the_api_key_header(fake, tmp_path, started) -> None:
    server = started(_keys_mode(fake, tmp_path), _env(ML_AZURE_KEY=TEAM_KEY))
    _, team_key = new_key(server, team="ml")
    _, plain_key = new_key(server)
    sdk(server, team_key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    seen = last(fake).headers
    assert seen["api-key"] == TEAM_KEY
    # Azure takes no OpenAI-Organization/Project, even from a team that set them.
    assert not {"authorization", "openai-organization", "openai-project"} & set(seen)
    sdk(server, plain_key).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "y"}])
    assert last(fake).headers["api-key"] == AZURE_KEY


def test_a_clients_own_token_replaces_our_entra_token(fake, tmp_path, started) -> None:
    server = started(_keys_mode(fake, tmp_path, {"mode": "passthrough"}, api_version=None,
                                token=True), _env())
    sdk(server, "client-entra-token").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    seen = last(fake).headers
    assert seen["authorization"] == "Bearer client-entra-token"
    assert "api-key" not in seen


def _stream(server, request_id: str, text: str, **extra) -> str:
    chunks = sdk(server).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], stream=True,
        extra_headers={"x-request-id": request_id}, **extra)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _accounted(fake: FakeAzure, tmp_path: Path, **azure) -> dict:
    return azure_config(fake.url, storage={"data_dir": str(tmp_path)},
                        accounting={"flush_seconds": 0.05}, **azure)


def test_a_streamed_azure_answer_is_counted_in_the_ledger(fake, tmp_path, started) -> None:
    request_id = "req_" + uuid.uuid4().hex
    text = f"count these words {uuid.uuid4().hex[:6]}"
    server = started(_accounted(fake, tmp_path), _env())
    assert _stream(server, request_id, text) == f"Echo: {text}"
    row = ledger_row(tmp_path / "gateway.db", request_id)
    # The fake's usage chunk: prompt words + 3 per message; one token per word answered.
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4 + 3, 5)
    assert (row["backend"], row["model"], row["status"]) == ("azure", "gpt-4o", 200)
    assert (row["outcome"], row["partial"]) == ("ok", 0)


def test_an_old_api_version_streams_without_stream_options_and_is_counted(
        fake, tmp_path, started) -> None:
    request_id = "req_" + uuid.uuid4().hex
    text = f"older api version {uuid.uuid4().hex[:6]}"
    server = started(_accounted(fake, tmp_path, api_version="2024-06-01"), _env())
    assert _stream(server, request_id, text) == f"Echo: {text}"
    assert "stream_options" not in last(fake).json  # the fake refuses it at this version
    row = ledger_row(tmp_path / "gateway.db", request_id)
    # A client that asks for usage itself gets Azure's answer to that: its own choice.
    with pytest.raises(openai.BadRequestError) as caught:
        _stream(server, "req_" + uuid.uuid4().hex, text,
                stream_options={"include_usage": True})
    assert "stream_options" in caught.value.response.json()["error"]["message"]
    # No usage chunk came: the gateway counted the tokens itself, a whole answer.
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert (row["outcome"], row["partial"]) == ("ok", 0)


def test_errors_reach_the_ledger_as_upstream_errors(fake, tmp_path, started) -> None:
    request_id = "req_" + uuid.uuid4().hex
    server = started(_accounted(fake, tmp_path), _env())
    reply = httpx.post(f"{server.url}/chat/completions", timeout=10,
                       headers={"x-request-id": request_id},
                       json={"model": "az-gone", "messages": [{"role": "user",
                                                                "content": "x"}]})
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "DeploymentNotFound"
    row = ledger_row(tmp_path / "gateway.db", request_id)
    assert (row["status"], row["outcome"]) == (404, "upstream_error")
