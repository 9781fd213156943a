"""Azure OpenAI upstreams (kind: azure) through a real gateway, driven by the openai SDK, in
front of the fake Azure resource: both URL forms, api-key and Entra token, deployment names,
Azure's answers and errors passed through untouched."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from llm_gateway.testing.fake_azure import FILTER_TRIGGER, FakeAzure
from llm_gateway.testing.fake_azure_wire import PROMPT_FILTER_RESULTS, content_filter_error

from azure_support import (
    AZURE_KEY,
    DATED,
    ENTRA_TOKEN,
    azure_config,
    gateways,
    last,
    sdk,
    words,
)

OPENAI_ONLY = ("authorization", "openai-organization", "openai-project")


@pytest.fixture(scope="module")
def fake():
    with FakeAzure(api_key=AZURE_KEY, token=ENTRA_TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeAzure) -> None:
    fake.reset()


@pytest.fixture(scope="module")
def started(fake):
    yield from gateways()


@pytest.fixture(scope="module")
def dated(fake, started):
    """api-key, /openai/deployments/{deployment}/...?api-version="""
    return started(azure_config(fake.url))


@pytest.fixture(scope="module")
def v1(fake, started):
    """Entra token, /openai/v1/..., the deployment as the body's model."""
    return started(azure_config(fake.url, api_version=None, token=True))


def test_chat_goes_to_the_deployment_url_with_the_api_key(dated, fake) -> None:
    prompt = words()
    answer = sdk(dated).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    assert answer.choices[0].message.content == f"Echo: {prompt}"
    assert answer.model == "gpt-4o-2024-08-06"  # Azure's answer, untouched
    assert answer.model_extra["prompt_filter_results"] == PROMPT_FILTER_RESULTS
    assert answer.choices[0].model_extra["content_filter_results"]["hate"]["filtered"] is False
    seen = last(fake)
    assert (seen.path, seen.query) == ("/openai/deployments/gpt-4o-prod/chat/completions",
                                       f"api-version={DATED}")
    assert seen.headers["api-key"] == AZURE_KEY
    assert not set(OPENAI_ONLY) & set(seen.headers)  # nor the client's own key
    assert seen.json["model"] == "gpt-4o"  # the body as the client sent it


def test_stream_keeps_azures_first_chunk_and_filter_results(dated, fake) -> None:
    prompt = words()
    chunks = list(sdk(dated).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}], stream=True))
    assert chunks[0].choices == []
    assert chunks[0].model_extra["prompt_filter_results"] == PROMPT_FILTER_RESULTS
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Echo: {prompt}"
    assert all("content_filter_results" in c.choices[0].model_extra for c in chunks[1:])
    assert all(c.usage is None for c in chunks)  # usage asked upstream, not shown unasked
    assert last(fake).json["stream_options"] == {"include_usage": True}


def test_embeddings_go_to_their_deployment(dated, fake) -> None:
    reply = sdk(dated).embeddings.create(model="text-embedding-3-small", input="two words")
    assert len(reply.data) == 1 and reply.usage.prompt_tokens == 2
    assert last(fake).path == "/openai/deployments/embed-small/embeddings"


@pytest.mark.parametrize(("model", "deployment"), [
    ("gpt-4o-mini", "gpt-4o-mini"),  # not in azure_deployments: its own deployment name
    ("house", "gpt-4o-prod"),  # routed to gpt-4o, which azure_deployments maps
])
def test_routed_names_map_to_deployments(dated, fake, model: str, deployment: str) -> None:
    sdk(dated).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert last(fake).path == f"/openai/deployments/{deployment}/chat/completions"


def test_responses_take_the_deployment_as_their_model(dated, fake) -> None:
    reply = sdk(dated).responses.create(model="gpt-4o", input="hello there")
    assert reply.output_text == "Echo: hello there"
    seen = last(fake)
    assert (seen.path, seen.query) == ("/openai/responses", f"api-version={DATED}")
    assert seen.json["model"] == "gpt-4o-prod"


def test_v1_form_with_an_entra_token(v1, fake) -> None:
    prompt = words()
    answer = sdk(v1).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}], temperature=0.5)
    assert answer.choices[0].message.content == f"Echo: {prompt}"
    seen = last(fake)
    assert (seen.path, seen.query) == ("/openai/v1/chat/completions", "")
    assert seen.headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
    assert "api-key" not in seen.headers
    assert seen.json == {"model": "gpt-4o-prod", "temperature": 0.5,
                         "messages": [{"role": "user", "content": prompt}]}


def test_v1_stream_and_embeddings(v1, fake) -> None:
    client = sdk(v1)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a b"}], stream=True))
    assert chunks[0].model_extra["prompt_filter_results"] == PROMPT_FILTER_RESULTS
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: a b"
    client.embeddings.create(model="text-embedding-3-small", input="x")
    seen = last(fake)
    assert (seen.path, seen.json["model"]) == ("/openai/v1/embeddings", "embed-small")


def test_v1_sends_the_clients_bytes_when_the_deployment_is_the_name(v1, fake) -> None:
    raw = b'{"model":  "gpt-4o-mini", "messages": [{"role": "user", "content": "as is"}]}'
    reply = httpx.post(f"{v1.url}/chat/completions", content=raw, timeout=10,
                       headers={"content-type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert last(fake).body == raw


def test_content_filter_refusal_passes_through_untouched(dated, fake) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(dated).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"say {FILTER_TRIGGER}"}])
    assert caught.value.code == "content_filter"
    assert caught.value.response.json() == orjson.loads(content_filter_error())


def test_unknown_deployment_is_azures_404(dated, fake) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(dated).chat.completions.create(
            model="az-nowhere", messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.json()["error"]["code"] == "DeploymentNotFound"
    assert last(fake).path == "/openai/deployments/az-nowhere/chat/completions"


def test_a_429_keeps_its_retry_after(dated, fake) -> None:
    fake.fail_next(429, retry_after="7")
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(dated).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.json()["error"]["code"] == "429"


@pytest.mark.parametrize("model", ["az-a/b", "az-x y", "az-50%25", "az-q?x=1"])
def test_a_deployment_name_that_would_change_the_path_is_refused(dated, fake, model) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(dated).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}])
    error = caught.value.response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        "model", "invalid_value", "invalid_request_error")
    assert "Azure OpenAI deployment" in error["message"]
    assert not fake.requests


def test_azure_lists_no_models_of_its_own(dated, fake) -> None:
    listed = {m.id for m in sdk(dated).models.list()}
    assert {"gpt-4o", "house", "text-embedding-3-small"} <= listed
    assert not fake.requests  # its deployments are not asked for (module doc says why)


def test_the_passthrough_to_an_azure_route_is_refused(fake, started) -> None:
    config = azure_config(fake.url)
    config["upstreams"]["openai"] = {"base_url": f"{fake.url}/v1"}  # takes the passthrough
    server = started(config)
    reply = httpx.post(f"{server.url}/images/generations", timeout=10,
                       json={"model": "gpt-4o", "prompt": "a cat"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "model_not_supported"
    assert not fake.requests
