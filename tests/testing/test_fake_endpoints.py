"""The fake's embeddings, models and Responses API endpoints, driven by the SDK and httpx."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest


def test_embeddings_float_and_base64(client: openai.OpenAI, http: httpx.Client) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]}
    floats = http.post("/embeddings", json={**body, "encoding_format": "float"}).json()
    assert floats["object"] == "list"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vectors = [d["embedding"] for d in floats["data"]]
    assert all(len(v) == 8 and all(-1 <= x <= 1 for x in v) for v in vectors)
    assert vectors[0] != vectors[1]

    b64 = http.post("/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = [list(struct.unpack("<8f", base64.b64decode(d["embedding"]))) for d in b64["data"]]
    assert decoded == vectors
    # The SDK asks for base64 by itself and decodes it.
    sdk = client.embeddings.create(model="text-embedding-3-small", input="alpha beta")
    assert list(sdk.data[0].embedding) == pytest.approx(vectors[0])
    wide = client.embeddings.create(model="m", input=[1, 2, 3], dimensions=20)
    assert len(wide.data) == 1 and len(wide.data[0].embedding) == 20


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4.1",
        "o3-mini",
        "text-embedding-3-small",
        "dall-e-3",
    ]
    model = client.models.retrieve("gpt-4.1")
    assert (model.id, model.object, model.owned_by) == ("gpt-4.1", "model", "openai")
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.code == "model_not_found"


# --- Responses API ----------------------------------------------------------------------------


def test_responses_create_get_delete(client: openai.OpenAI, http: httpx.Client) -> None:
    created = client.responses.create(
        model="gpt-4.1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}],
    )
    assert created.id.startswith("resp_") and created.status == "completed"
    assert created.output_text == "Echo: hi there"
    assert created.usage is not None
    assert (created.usage.input_tokens, created.usage.output_tokens) == (5, 3)
    assert client.responses.retrieve(created.id).output_text == "Echo: hi there"
    deleted = http.delete(f"/responses/{created.id}").json()
    assert deleted == {"id": created.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_responses_stream(client: openai.OpenAI, http: httpx.Client) -> None:
    events = list(client.responses.create(model="gpt-4.1", input="a b c", stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas == final.output_text == "Echo: a b c"
    assert final.usage is not None and final.usage.output_tokens == 4
    raw = http.post("/responses", json={"model": "m", "input": "x", "stream": True}).text
    assert raw.startswith("event: response.created\ndata: {")
