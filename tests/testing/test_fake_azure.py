"""The fake Azure OpenAI resource is as strict as Azure where the gateway could go wrong: the
credential, the api-version, the deployment, stream_options on old API versions."""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.testing.fake_azure import FakeAzure

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
DATED = "/openai/deployments/gpt-4o-prod/chat/completions"


@pytest.fixture(scope="module")
def fake():
    with FakeAzure(api_key="the-key", token="the-token") as server:
        yield server


def post(fake: FakeAzure, path: str, headers: dict | None = None, **body) -> httpx.Response:
    return httpx.post(fake.url + path, json={**CHAT, **body}, timeout=10,
                      headers={"api-key": "the-key"} if headers is None else headers)


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    (f"{DATED}?api-version=2024-10-21", {}, 401, "401"),
    (f"{DATED}?api-version=2024-10-21", {"authorization": "Bearer the-key"}, 401, "401"),
    (f"{DATED}?api-version=2024-10-21", {"api-key": "the-token"}, 401, "401"),
    (DATED, None, 404, "404"),
    ("/openai/deployments/nope/chat/completions?api-version=2024-10-21", None, 404,
     "DeploymentNotFound"),
    ("/openai/v1/chat/completions?api-version=2024-10-21", None, 400, "BadRequest"),
    ("/v1/chat/completions", None, 404, "404"),
])
def test_what_azure_refuses(fake, path, headers, status, code) -> None:
    reply = post(fake, path, headers, model="gpt-4o-prod")
    assert (reply.status_code, reply.json()["error"]["code"]) == (status, code)


def test_both_credentials_and_both_forms_are_served(fake) -> None:
    dated = post(fake, f"{DATED}?api-version=2024-10-21")
    v1 = post(fake, "/openai/v1/chat/completions", {"authorization": "Bearer the-token"},
              model="gpt-4o-prod")
    for reply in (dated, v1):
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "gpt-4o-2024-08-06"
        assert reply.json()["prompt_filter_results"][0]["prompt_index"] == 0


def test_old_api_versions_refuse_stream_options(fake) -> None:
    options = {"stream": True, "stream_options": {"include_usage": True}}
    assert post(fake, f"{DATED}?api-version=2024-06-01", **options).status_code == 400
    assert post(fake, f"{DATED}?api-version=2024-10-21", **options).status_code == 200
