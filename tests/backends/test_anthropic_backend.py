"""The Anthropic backend's own choices, seen on the request it sends: which headers speak for
the gateway (its key or a team's, the API version), what the client's headers may not
replace, and which endpoints it serves."""

from __future__ import annotations

import httpx
import orjson
import pytest

from llm_gateway.backends.anthropic import AnthropicBackend
from llm_gateway.call import Call
from llm_gateway.config import UpstreamConfig
from llm_gateway.errors import InvalidRequest
from llm_gateway.principal import Credentials

MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 1, "output_tokens": 1}}


def backend(seen: list[httpx.Request], **cfg: object) -> AnthropicBackend:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=MESSAGE)

    config = UpstreamConfig(base_url="http://anthropic.test/v1", kind="anthropic",
                            api_key_env="ANT_KEY", name="anth", **cfg)
    return AnthropicBackend(config, {"ANT_KEY": "sk-ant-ours"},
                            transport=httpx.MockTransport(answer))


def chat_call(endpoint: str = "/chat/completions", **extra: object) -> Call:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}
    return Call(operation="createChatCompletion", endpoint=endpoint, model="claude", body=body,
                raw=orjson.dumps(body), stream=False, request_id="req_1", **extra)


async def test_our_key_and_version_replace_the_clients() -> None:
    seen: list[httpx.Request] = []
    call = chat_call(headers={"x-api-key": "sk-client-own", "anthropic-version": "1999",
                              "anthropic-beta": "some-beta", "user-agent": "sdk"})
    result = await backend(seen, anthropic_version="2024-01-01").complete(call)
    assert result.status == 200
    sent = seen[0]
    assert str(sent.url) == "http://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-ours"
    assert sent.headers["anthropic-version"] == "2024-01-01"
    assert sent.headers["anthropic-beta"] == "some-beta"  # the client's other headers go on
    assert orjson.loads(result.body)["choices"][0]["message"]["content"] == "Hi"


async def test_a_teams_key_replaces_ours_and_the_request_id_goes_when_configured() -> None:
    seen: list[httpx.Request] = []
    call = chat_call(credentials=Credentials(api_key="sk-ant-team"))
    await backend(seen, request_id_header="x-lgw-request-id").complete(call)
    assert seen[0].headers["x-api-key"] == "sk-ant-team"
    assert seen[0].headers["x-lgw-request-id"] == "req_1"


async def test_default_max_tokens_comes_from_the_config() -> None:
    seen: list[httpx.Request] = []
    await backend(seen, default_max_tokens=77).complete(chat_call())
    assert orjson.loads(seen[0].content)["max_tokens"] == 77
    await backend(seen).complete(chat_call())
    assert orjson.loads(seen[1].content)["max_tokens"] == 4096


@pytest.mark.parametrize("endpoint", ["/embeddings", "/completions", "/responses"])
async def test_other_endpoints_are_refused_before_sending(endpoint: str) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(InvalidRequest) as caught:
        await backend(seen).complete(chat_call(endpoint))
    assert caught.value.code == "unsupported_endpoint"
    assert endpoint in caught.value.message
    assert not seen
