"""What an Anthropic upstream cannot do, and its failures, as OpenAI clients see them: a 400
naming the field or endpoint, Anthropic's errors in OpenAI's shape and statuses (429 with its
Retry-After, 529 overloaded as 503, a prompt too long as context_length_exceeded), and an
error event mid-stream."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from llm_gateway.testing.fake_anthropic import FakeAnthropic

from anthropic_support import Served, anthropic_config
from gateway_support import gateway_config


def chat(client: openai.OpenAI, text: str = "Hi", **extra):
    return client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": text}], **extra)


@pytest.mark.parametrize(("field", "value"), [
    ("n", 2), ("logprobs", True), ("presence_penalty", 0.5), ("seed", 1),
    ("response_format", {"type": "json_object"}), ("temperature", 1.5),
])
def test_a_field_without_an_equivalent_is_a_400_naming_it(
        client: openai.OpenAI, anthropic: FakeAnthropic, field: str, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, **{field: value})
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == field
    assert field in error["message"]
    assert error["type"] == "invalid_request_error"
    assert anthropic.calls["POST /v1/messages"] == 0  # refused before anything was sent


def test_other_endpoints_are_a_400_naming_them(client: openai.OpenAI,
                                               anthropic: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="claude", input="hello")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_endpoint"
    assert "/v1/embeddings" in error["message"] and "Anthropic" in error["message"]
    assert anthropic.calls["POST /v1/messages"] == 0


def test_the_responses_api_is_answered_through_messages(client: openai.OpenAI,
                                                        anthropic: FakeAnthropic) -> None:
    """Anthropic speaks chat only: a Responses call is translated to chat, then to Messages."""
    response = client.responses.create(model="claude", input="hello", max_output_tokens=16)
    assert response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    assert anthropic.calls["POST /v1/messages"] == 1


def test_rate_limit_is_a_429_keeping_retry_after(client: openai.OpenAI,
                                                 anthropic: FakeAnthropic) -> None:
    anthropic.fail_next(429, "rate_limit_error", "Number of request tokens has exceeded your "
                        "per-minute rate limit", retry_after="7")
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client)
    assert caught.value.response.headers["retry-after"] == "7"
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "rate_limit_exceeded"
    assert "rate limit" in error["message"]
    assert anthropic.calls["POST /v1/messages"] == 1  # a 429 is not retried


def test_overloaded_is_a_503_after_the_retries(client: openai.OpenAI,
                                               anthropic: FakeAnthropic) -> None:
    for _ in range(2):  # the first try and the one retry the config allows
        anthropic.fail_next(529, "overloaded_error", "Overloaded")
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client, stream=True)
    assert caught.value.status_code == 503
    error = caught.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["message"]) == \
        ("server_error", "overloaded", "Overloaded")
    assert anthropic.calls["POST /v1/messages"] == 2


def test_one_overloaded_answer_is_retried(client: openai.OpenAI,
                                          anthropic: FakeAnthropic) -> None:
    anthropic.fail_next(529, "overloaded_error", "Overloaded")
    assert chat(client, "again").choices[0].message.content == "Echo: again"
    assert anthropic.calls["POST /v1/messages"] == 2


def test_a_prompt_too_long_is_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, "word " * 600)  # the fake's window is 500 words
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded"
    assert "prompt is too long" in error["message"]


def test_an_error_event_mid_stream_becomes_an_openai_error_event(
        served: Served, anthropic: FakeAnthropic) -> None:
    anthropic.error_in_stream_next(after=5, type_="overloaded_error", message="Overloaded")
    body = {"model": "claude", "stream": True,
            "messages": [{"role": "user", "content": "one two three four"}]}
    with httpx.stream("POST", served.gateway.url + "/chat/completions", json=body,
                      headers={"authorization": "Bearer sk-client"}, timeout=15) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    contents = [orjson.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert contents == ["", "Echo: ", "one "]  # what came before the error went out as it came
    assert orjson.loads(data[-1]) == {"error": {"message": "Overloaded", "type": "server_error",
                                                "param": None, "code": "overloaded"}}


def test_the_sdk_raises_on_the_error_event(client: openai.OpenAI,
                                           anthropic: FakeAnthropic) -> None:
    anthropic.error_in_stream_next(after=5)
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(chat(client, "one two three", stream=True))


def test_the_model_list_shows_anthropics_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert models["claude"].owned_by == "anthropic"
    assert models["claude"].created > 1_700_000_000  # the upstream's own date
    assert "claude-haiku-4-5-20251001" in models  # listed by Anthropic, routed by claude-*


def test_passthrough_paths_are_refused_for_an_anthropic_model(
        make_gateway, fake, anthropic: FakeAnthropic, tmp_path) -> None:
    config = gateway_config(fake.url)
    config["upstreams"]["anthropic"] = \
        anthropic_config(anthropic.url, tmp_path)["upstreams"]["anthropic"]
    config["models"].append({"name": "claude", "backend": "anthropic"})
    gateway = make_gateway(config)
    reply = httpx.post(gateway.url + "/images/generations", timeout=10,
                       json={"model": "claude", "prompt": "a cat"},
                       headers={"authorization": "Bearer sk-client"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "model_not_supported"
    assert "upstream 'anthropic'" in error["message"]
    assert anthropic.calls["POST /v1/messages"] == 0 and not fake.requests
