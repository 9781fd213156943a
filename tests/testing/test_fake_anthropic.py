"""The fake Anthropic upstream speaks the Messages API and refuses what Anthropic refuses, so
the gateway's tests against it mean something."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from llm_gateway.testing.fake_anthropic import FakeAnthropic

KEY = "sk-ant-fake"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


def post(fake: FakeAnthropic, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(fake.url + "/messages", json=body, timeout=5,
                      headers=HEADERS if headers is None else headers)


def body(**extra: object) -> dict:
    return {"model": "claude-x", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hello there"}], **extra}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    data = response.json()
    assert data["type"] == "error"
    return response.status_code, data["error"]["type"], data["error"]["message"]


def test_answers_a_message(fake: FakeAnthropic) -> None:
    data = post(fake, body()).json()
    assert data["type"] == "message" and data["id"].startswith("msg_")
    assert data["content"] == [{"type": "text", "text": "Echo: hello there"}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"]["input_tokens"] == 2 and data["usage"]["output_tokens"] == 3


@pytest.mark.parametrize(("headers", "expected"), [
    ({"anthropic-version": "2023-06-01"}, (401, "authentication_error")),
    ({"x-api-key": "wrong", "anthropic-version": "2023-06-01"}, (401, "authentication_error")),
    ({"x-api-key": KEY}, (400, "invalid_request_error")),
])
def test_checks_the_key_and_the_version(fake: FakeAnthropic, headers: dict,
                                        expected: tuple) -> None:
    assert error_of(post(fake, body(), headers))[:2] == expected


@pytest.mark.parametrize(("change", "message"), [
    ({"max_tokens": None}, "max_tokens: Field required"),
    ({"n": 2}, "n: Extra inputs are not permitted"),
    ({"temperature": 1.5}, "temperature"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "hi"}]}]}, "tool_use_id"),
])
def test_refuses_what_anthropic_refuses(fake: FakeAnthropic, change: dict,
                                        message: str) -> None:
    request = {k: v for k, v in {**body(), **change}.items() if v is not None}
    status, kind, text = error_of(post(fake, request))
    assert (status, kind) == (400, "invalid_request_error")
    assert message in text


def test_streams_the_messages_event_sequence(fake: FakeAnthropic) -> None:
    with httpx.stream("POST", fake.url + "/messages", json=body(stream=True), headers=HEADERS,
                      timeout=5) as response:
        lines = list(response.iter_lines())
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    data = [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert [d["type"] for d in data] == names  # each data names its own event type


def test_injected_failures(fake: FakeAnthropic) -> None:
    fake.fail_next(529, "overloaded_error", "Overloaded")
    fake.fail_next(429, "rate_limit_error", "Slow down", retry_after="3")
    assert error_of(post(fake, body())) == (529, "overloaded_error", "Overloaded")
    limited = post(fake, body())
    assert error_of(limited)[:2] == (429, "rate_limit_error")
    assert limited.headers["retry-after"] == "3"
    assert post(fake, body()).status_code == 200
