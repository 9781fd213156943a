"""The fake OpenAI upstream, driven by the official SDK and plain httpx over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.fake_responses import download_bytes

KEY = "sk-fake"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeUpstream) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key=KEY, max_retries=0, timeout=5)


@pytest.fixture
def http(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        yield c


def chat_body(text: str = "hello fake world", **extra: object) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


# --- chat completions -------------------------------------------------------------------------


def test_chat_answer_and_usage(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello fake world"},
        ],
    )
    assert out.id.startswith("chatcmpl-")
    assert out.object == "chat.completion"
    assert out.model == "gpt-4o"
    assert out.choices[0].message.content == "Echo: hello fake world"
    assert out.choices[0].finish_reason == "stop"
    # 5 words over both messages + 3 per message; one completion token per word.
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (11, 4)
    assert out.usage.total_tokens == 15
    assert out.system_fingerprint == "fp_fake"
    assert out.model_extra == {"x_fake_extra": {"kept": True}}


def test_chat_text_parts_max_tokens_and_n(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "one two "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "text", "text": "three four"},
                ],
            }
        ],
        max_tokens=3,
        n=2,
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert {c.message.content for c in out.choices} == {"Echo: one two"}
    assert out.choices[1].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 6


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(**chat_body())  # type: ignore[arg-type]
    chunks = list(
        client.chat.completions.create(
            **chat_body(),
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"choices":[]' not in r.text and '"usage"' not in r.text
    # role chunk + one per word ("Echo:", "hello", "fake", "world") + finish + [DONE]
    assert len(events) == 7


# --- completions, embeddings, models ----------------------------------------------------------


def test_completions(client: openai.OpenAI) -> None:
    out = client.completions.create(model="gpt-4o-mini", prompt=["say this", "ignored"])
    assert out.object == "text_completion"
    assert out.choices[0].text == "Echo: say this"
    assert out.usage is not None and out.usage.prompt_tokens == 2
    stream = client.completions.create(
        model="gpt-4o-mini",
        prompt="say this please",
        stream=True,
        max_tokens=3,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: say this"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


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


# --- passthrough echo -------------------------------------------------------------------------


def test_echo_streamed_upload(fake: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(3 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    r = http.post(
        "/files?purpose=batch",
        content=pieces(),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.json() == {
        "object": "echo",
        "method": "POST",
        "path": "/v1/files",
        "query": "purpose=batch",
        "content_type": "application/octet-stream",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    recorded = fake.requests[-1]
    assert (recorded.body, recorded.json, recorded.query) == (b"", None, "purpose=batch")

    small = http.put("/batches/b1", json={"k": 1})
    assert small.json()["method"] == "PUT" and small.json()["bytes"] == len(b'{"k":1}')
    assert fake.requests[-1].json == {"k": 1}


def test_echo_download(http: httpx.Client) -> None:
    size = 200_000
    r = http.get("/files/file-1/content", params={"size": size})
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == download_bytes(size)
    assert len(r.content) == size and r.content[251] == 0 and r.content[252] == 1


# --- injections -------------------------------------------------------------------------------


def test_fail_next(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.fail_next(500)
    fake.fail_next(429, retry_after="7", message="slow down")
    with pytest.raises(openai.InternalServerError) as e500:
        client.chat.completions.create(**chat_body())  # type: ignore[arg-type]
    assert e500.value.body == {
        "message": "injected failure",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.RateLimitError) as e429:
        client.embeddings.create(model="m", input="x")
    assert e429.value.response.headers["retry-after"] == "7"
    assert e429.value.code == "rate_limit_exceeded"
    assert e429.value.type == "rate_limit_exceeded"
    assert client.chat.completions.create(**chat_body()).choices  # type: ignore[arg-type]
    assert fake.calls == {"POST /v1/chat/completions": 2, "POST /v1/embeddings": 1}


def test_delay_next(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.delay_next(0.3)
    start = time.monotonic()
    assert http.get("/models").status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    http.get("/models")
    assert time.monotonic() - start < 0.3


def test_drop_next_stream(fake: FakeUpstream, client: openai.OpenAI) -> None:
    fake.drop_next_stream(after_chunks=2)
    received = []
    with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
        for chunk in client.chat.completions.create(**chat_body(), stream=True):  # type: ignore[arg-type]
            received.append(chunk)
    assert len(received) == 2
    fake.drop_next_stream()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**chat_body())  # type: ignore[arg-type]
    assert fake.disconnects == 0  # the fake hung up, not the client
    assert client.chat.completions.create(**chat_body()).choices  # type: ignore[arg-type]


def test_disconnect_counting(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.chunk_delay = 0.05
    try:
        with http.stream(
            "POST", "/chat/completions", json=chat_body("word " * 100, stream=True)
        ) as r:
            next(r.iter_raw())
        assert fake.wait_for(lambda: fake.disconnects == 1)
        # A stream read to its end is not a disconnect.
        fake.chunk_delay = 0.0
        http.post("/chat/completions", json=chat_body(stream=True))
        time.sleep(0.05)
        assert fake.disconnects == 1
    finally:
        fake.chunk_delay = 0.0


# --- auth, bookkeeping, standalone ------------------------------------------------------------


def test_api_key() -> None:
    with FakeUpstream(api_key=KEY, models=["only-model"]) as guarded:
        wrong = openai.OpenAI(base_url=guarded.url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.models.list()
        assert err.value.body == {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        right = openai.OpenAI(base_url=guarded.url, api_key=KEY, max_retries=0)
        assert [m.id for m in right.models.list()] == ["only-model"]
        assert guarded.calls["GET /v1/models"] == 2


def test_calls_requests_headers_and_reset(fake: FakeUpstream, http: httpx.Client) -> None:
    r = http.post(
        "/chat/completions?x=1",
        json=chat_body(),
        headers={"x-request-id": "req-abc", "X-Custom": "v"},
    )
    assert r.headers["x-request-id"] == "req-abc"
    assert r.headers["openai-processing-ms"] == "1"
    assert http.get("/models").headers["x-request-id"]
    bad = http.post("/chat/completions", content=b"not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    outside = httpx.get(fake.url.removesuffix("/v1") + "/elsewhere")
    assert outside.status_code == 404 and outside.json()["error"]["code"] == "unknown_url"
    assert fake.calls == {"POST /v1/chat/completions": 2, "GET /v1/models": 1, "GET /elsewhere": 1}
    first = fake.requests[0]
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "x=1")
    assert first.headers["x-custom"] == "v"
    assert first.json == chat_body() and first.body.startswith(b"{")
    assert fake.requests[2].json is None
    fake.fail_next(500)
    fake.reset()
    assert not fake.calls and not fake.requests
    assert http.get("/models").status_code == 200


def test_standalone_entry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_gateway.testing.fake_upstream",
            "--port",
            str(port),
            "--chunk-delay",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}/v1" in proc.stdout.readline()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        assert r.status_code == 200 and r.json()["object"] == "list"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Warning" not in err
