"""Exact streaming usage through the real gateway and the fake OpenAI upstream.

The gateway asks the upstream for the usage chunk, hands it only to clients that asked, and
still counts a stream that the client or the upstream cut short (tiktoken, partial).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from stream_usage_support import MeterProbe, chunks_without_choices, ledger_row, sse_events

from llm_gateway.accounting import tokens
from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY, gateway_config

SEA = ("the sea is wide and the sea is deep and the fish swim in it all day long while "
       "the boats go by and the gulls cry above the waves that break on the shore")


@pytest.fixture(scope="module")
def slow() -> Iterator[FakeUpstream]:
    """A fake upstream streaming one chunk each 50 ms, so a stream can be cut midway."""
    with FakeUpstream(api_key=UPSTREAM_KEY, chunk_delay=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(slow: FakeUpstream) -> Iterator[tuple[GatewayServer, MeterProbe]]:
    with GatewayServer(parse_config(gateway_config(slow.url), env=ENV), env=ENV) as server:
        yield server, MeterProbe(server)


@pytest.fixture(autouse=True)
def _clean(slow: FakeUpstream) -> None:
    slow.reset()


def rid() -> str:
    return "req_" + uuid.uuid4().hex


def client(server: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="sk-client", max_retries=0, timeout=30)


def read_some_then_leave(server: GatewayServer, request_id: str, words: int) -> str:
    """Stream the long answer with the SDK, and close it after a few words; their text."""
    stream = client(server).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": SEA}], stream=True,
        extra_headers={"x-request-id": request_id})
    received = ""
    for chunk in stream:
        assert chunk.choices
        received += chunk.choices[0].delta.content or ""
        if received.count(" ") >= words:
            break
    stream.close()
    return received


def chat(text: str = "Hi there", **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
            "stream": True, **extra}


def test_usage_is_asked_for_and_stripped_for_the_sdk(gateway, slow) -> None:
    server, probe = gateway
    request_id = rid()
    stream = client(server).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi there"}], stream=True,
        extra_headers={"x-request-id": request_id})
    chunks = list(stream)
    assert chunks and all(chunk.choices for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: Hi there"
    sent = slow.requests[-1].json
    assert sent["stream_options"] == {"include_usage": True}
    m = probe.metered(request_id)
    # The fake's rule: 3 words answered; 2 words + 3 for the one message in the prompt.
    assert (m.usage.prompt, m.usage.completion, m.partial, m.outcome) == (5, 3, False, "ok")
    assert m.first_token_at is not None


@pytest.mark.parametrize(("path", "body"), [
    ("/chat/completions", chat("one two three")),
    ("/completions", {"model": "gpt-4o-mini", "prompt": "one two three", "stream": True}),
    ("/chat/completions", chat("one two", stream_options={"include_usage": False})),
])
def test_no_chunk_without_choices_reaches_a_client_that_did_not_ask(gateway, slow, path,
                                                                     body) -> None:
    server, probe = gateway
    request_id = rid()
    events = sse_events(server.url, path, body, request_id)
    assert events[-1] == b"[DONE]"
    assert chunks_without_choices(events) == []
    assert slow.requests[-1].json["stream_options"]["include_usage"] is True
    m = probe.metered(request_id)
    assert m.usage is not None and m.usage.completion > 0 and not m.partial


def test_client_that_asked_gets_usage_exactly_once(gateway) -> None:
    server, probe = gateway
    request_id = rid()
    events = sse_events(server.url, "/chat/completions",
                        chat("one two three", stream_options={"include_usage": True}),
                        request_id)
    usage_chunks = chunks_without_choices(events)
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["completion_tokens"] == 4
    m = probe.metered(request_id)
    assert (m.usage.completion, m.usage.prompt) == (4, 6)

    request_id = rid()
    stream = client(server).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-request-id": request_id})
    with_usage = [c for c in stream if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0].choices == []
    assert probe.metered(request_id).usage.completion == with_usage[0].usage.completion_tokens


def test_stream_cut_by_the_client_is_counted_partial(gateway, slow) -> None:
    server, probe = gateway
    request_id = rid()
    received = read_some_then_leave(server, request_id, words=5)
    m = probe.metered(request_id)
    assert (m.partial, m.outcome) == (True, "client_gone")
    enc = tokens.encoding("gpt-4o-mini")
    seen = len(enc.encode(received))
    # The gateway may have relayed a chunk or two more than the client read before it left.
    assert seen <= m.usage.completion <= seen + 4
    full = len(enc.encode("Echo: " + SEA))
    assert m.usage.completion < full
    prompt = tokens.prompt_tokens("/chat/completions",
                                  {"messages": [{"role": "user", "content": SEA}]}, enc)
    assert m.usage.prompt == prompt
    assert slow.wait_for(lambda: slow.disconnects >= 1)  # and the upstream was let go


def test_upstream_dropping_midway_is_counted_partial(gateway, slow) -> None:
    server, probe = gateway
    slow.drop_next_stream(after_chunks=4)
    request_id = rid()
    events = sse_events(server.url, "/chat/completions", chat(SEA), request_id)
    assert events[-1].startswith(b'{"error"')
    m = probe.metered(request_id)
    assert (m.partial, m.outcome) == (True, "upstream_error")
    enc = tokens.encoding("gpt-4o-mini")
    # 4 events: the role chunk and the first three words.
    assert m.usage.completion == len(enc.encode("Echo: the sea "))


def test_cut_stream_lands_in_the_ledger_as_partial(slow, tmp_path: Path) -> None:
    """End to end through the real Accountant: the record of a cut stream says partial."""
    env = {k: v for k, v in ENV.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}
    config = gateway_config(slow.url, storage={"data_dir": str(tmp_path)},
                            accounting={"flush_seconds": 0.05})
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        request_id = rid()
        received = read_some_then_leave(server, request_id, words=3)
        row = ledger_row(tmp_path / "gateway.db", request_id)
    seen = len(tokens.encoding("gpt-4o-mini").encode(received))
    assert (row["partial"], row["outcome"]) == (1, "client_gone")
    assert seen <= row["completion_tokens"] <= seen + 4
    assert row["prompt_tokens"] > 30
