"""A Responses call answered through chat completions (issue 16, item 4) is counted as the chat
call it became: the ledger has the chat answer's usage, whole or streamed, and the client's
response reports the same tokens in the Responses API's shape; a client that leaves mid-stream
ends the chat call, counted as cut short."""

from __future__ import annotations

import httpx
import openai
from stream_usage_support import ledger_row

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY


def test_ledger_counts_translated_calls_as_chat(fake, tmp_path):
    upstream = {"base_url": fake.url, "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                "responses_api": False}
    config = {"upstreams": {"chatonly": upstream},
              "models": [{"name": "chat-model", "backend": "chatonly"}],
              "storage": {"data_dir": str(tmp_path)}, "accounting": {"flush_seconds": 0.05}}
    env = {k: v for k, v in ENV.items() if not k.startswith("LLM_GATEWAY__STORAGE")}
    with GatewayServer(parse_config(config, env=env), env=env) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="sk-client", max_retries=0)
        whole = client.responses.create(model="chat-model", input="one two three",
                                        extra_headers={"x-request-id": "req_whole"})
        events = list(client.responses.create(model="chat-model", input="four five",
                                              stream=True,
                                              extra_headers={"x-request-id": "req_stream"}))
        streamed = events[-1].response
        for request_id, response in (("req_whole", whole), ("req_stream", streamed)):
            row = ledger_row(tmp_path / "gateway.db", request_id)
            assert row["endpoint"] == "/chat/completions" and row["backend"] == "chatonly"
            assert row["outcome"] == "ok" and row["status"] == 200
            assert (row["prompt_tokens"], row["completion_tokens"]) == (
                response.usage.input_tokens, response.usage.output_tokens)
            assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0


def test_a_client_leaving_a_translated_stream_cancels_the_chat_call(tmp_path):
    env = {k: v for k, v in ENV.items() if not k.startswith("LLM_GATEWAY__STORAGE")}
    with FakeUpstream(api_key=UPSTREAM_KEY, chunk_delay=0.2) as slow:
        upstream = {"base_url": slow.url, "api_key_env": "LGW_TEST_UPSTREAM_KEY",
                    "responses_api": False}
        config = {"upstreams": {"chatonly": upstream},
                  "models": [{"name": "chat-model", "backend": "chatonly"}],
                  "storage": {"data_dir": str(tmp_path)},
                  "accounting": {"flush_seconds": 0.05}}
        with GatewayServer(parse_config(config, env=env), env=env) as gw, httpx.stream(
                "POST", gw.url + "/responses", timeout=10, headers={"x-request-id": "req_gone"},
                json={"model": "chat-model", "input": " ".join(["w"] * 50), "stream": True},
        ) as reply:
            seen = []
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if "response.output_text.delta" in seen:
                    break  # and hang up, mid-answer
        row = ledger_row(tmp_path / "gateway.db", "req_gone")
        assert slow.wait_for(lambda: slow.disconnects >= 1)
    assert row["outcome"] == "client_gone" and row["partial"] == 1
    assert row["completion_tokens"] >= 1
