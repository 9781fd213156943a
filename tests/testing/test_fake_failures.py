"""The fake's failure injection: failures, delays, dropped streams, disconnect counting."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from llm_gateway.testing import FakeUpstream

from fake_support import chat_body

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


def test_a_delayed_request_whose_caller_left_takes_no_later_fault(
        fake: FakeUpstream, http: httpx.Client) -> None:
    """A delayed request wakes after its caller gave up (a gateway's total timeout); it used to
    take the next test's queued drop, so that test's own request was served whole."""
    fake.delay_next(0.6)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/models", timeout=0.2)
    fake.drop_next_stream()
    time.sleep(0.8)  # the delayed request has woken up by now
    with pytest.raises(httpx.TransportError):
        http.get("/models")  # the drop is still there for this one


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
