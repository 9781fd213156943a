"""GET /v1/models, /v1/models/{model} and the Responses API."""

from __future__ import annotations

import openai
import pytest


def test_models_merge_configured_aliases_and_upstream(client):
    ids = [m.id for m in client.models.list()]
    assert len(ids) == len(set(ids)), "no duplicates"
    # Configured exact names and aliases.
    assert {"gpt-4o-mini", "gpt-3.5-turbo", "house-model"} <= set(ids)
    # The upstream's own models that a wildcard route sends back to it.
    assert {"gpt-4o", "gpt-4.1", "text-embedding-3-small"} <= set(ids)
    # Upstream models no route claims are not offered.
    assert "dall-e-3" not in ids and "o3-mini" not in ids
    model = next(m for m in client.models.list() if m.id == "gpt-4o")
    assert model.object == "model" and model.owned_by and isinstance(model.created, int)


def test_models_list_is_cached(client, fake):
    client.models.list()
    client.models.list()
    assert fake.calls["GET /v1/models"] <= 1


def test_retrieve_model(client):
    assert client.models.retrieve("gpt-3.5-turbo").id == "gpt-3.5-turbo"
    # Ids with slashes (Hugging Face style) are one path parameter.
    assert client.models.retrieve("acme/house-llm").id == "acme/house-llm"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body["code"] == "model_not_found"


def test_responses_create_get_delete(client, fake):
    created = client.responses.create(model="gpt-4o-mini", input="tell me more")
    assert created.output_text == "Echo: tell me more"
    assert created.usage.output_tokens == 4
    again = client.responses.retrieve(created.id)
    assert again.id == created.id
    deleted = client.responses.delete(created.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    assert fake.calls[f"DELETE /v1/responses/{created.id}"] == 1


def test_responses_stream(client):
    events = list(client.responses.create(model="gpt-4o-mini", input="a b", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Echo: a b"
    assert client.responses.retrieve(events[-1].response.id).status == "completed"


async def test_responses_async(aclient):
    created = await aclient.responses.create(model="gpt-4o-mini", input="hi")
    assert created.output_text == "Echo: hi"


def test_responses_stream_helper_of_the_sdk(client):
    with client.responses.stream(model="gpt-4o-mini", input="x y z") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Echo: x y z" == final.output_text
