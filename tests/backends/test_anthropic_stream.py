"""Anthropic's stream events -> chat.completion.chunk events, one by one, as the fake sends
them (its events are the Messages API's sequence, ping included)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from llm_gateway.backends.anthropic_stream import ChunkStream, translated
from llm_gateway.testing import fake_anthropic_answer as fa
from llm_gateway.usage import Usage


def answer(content: list, stop_reason: str = "end_turn") -> dict:
    return {"id": "msg_01x", "type": "message", "role": "assistant", "model": "claude-y",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 3, "cache_creation_input_tokens": 2,
                      "cache_read_input_tokens": 40}}


async def blocks(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


async def run(events: list[bytes], include_usage: bool = True) -> list[bytes]:
    chunks = ChunkStream("claude", include_usage=include_usage, created=1)
    return [b async for b in translated(blocks(events), chunks, "anth")]


def payloads(out: list[bytes]) -> list:
    found = []
    for block in out:
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
                found.append(data if data == b"[DONE]" else orjson.loads(data))
    return found


async def test_text_streams_delta_by_delta() -> None:
    out = payloads(await run(fa.events(answer([{"type": "text",
                                                "text": "Hello there world"}]))))
    first, *middle, finish, usage, done = out
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["id"] == "msg_01x" and first["model"] == "claude-y"
    assert first["object"] == "chat.completion.chunk"
    assert [c["choices"][0]["delta"]["content"] for c in middle] == ["Hello ", "there ", "world"]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": "stop"}
    assert usage["choices"] == []
    assert Usage.from_object(usage["usage"]) == Usage(47, 3, 40, 50)
    assert done == b"[DONE]"


async def test_usage_chunk_only_when_asked() -> None:
    out = payloads(await run(fa.events(answer([{"type": "text", "text": "Hi"}])),
                             include_usage=False))
    assert all(isinstance(p, bytes) or p["choices"] for p in out)
    assert out[-1] == b"[DONE]"


async def test_tool_use_streams_as_tool_call_fragments() -> None:
    content = [{"type": "text", "text": "Checking."},
               {"type": "tool_use", "id": "toolu_a", "name": "weather",
                "input": {"city": "Paris", "unit": "celsius"}},
               {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {"tz": "CET"}}]
    out = payloads(await run(fa.events(answer(content, "tool_use"))))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out
             if isinstance(c, dict) and c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "toolu_a", "type": "function",
                        "function": {"name": "weather", "arguments": ""}}
    fragments = [c["function"]["arguments"] for c in calls if c["index"] == 0][1:]
    assert len(fragments) >= 2  # arrived in pieces, passed on in pieces
    assert orjson.loads("".join(fragments)) == {"city": "Paris", "unit": "celsius"}
    second = [c for c in calls if c["index"] == 1]
    assert second[0]["id"] == "toolu_b"
    assert orjson.loads("".join(c["function"]["arguments"] for c in second)) == {"tz": "CET"}
    finish = [c for c in out if isinstance(c, dict) and c["choices"]
              and c["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "tool_calls"


async def test_an_error_event_ends_the_stream_with_an_openai_error() -> None:
    events = fa.events(answer([{"type": "text", "text": "one two three four"}]))
    out = payloads(await run([*events[:5], fa.error_event("overloaded_error", "Overloaded")]))
    assert out[-1] == {"error": {"message": "Overloaded", "type": "server_error",
                                 "param": None, "code": "overloaded"}}
    assert b"[DONE]" not in out


async def test_a_stream_cut_before_message_stop_ends_with_an_error() -> None:
    events = fa.events(answer([{"type": "text", "text": "one two"}]))
    out = payloads(await run(events[:4]))
    assert out[-1]["error"]["code"] == "upstream_unavailable"


async def test_events_arriving_together_are_all_translated() -> None:
    events = fa.events(answer([{"type": "text", "text": "a b c"}]))
    out = payloads(await run([b"".join(events)]))
    texts = [p["choices"][0]["delta"].get("content") for p in out
             if isinstance(p, dict) and p["choices"]]
    assert texts == ["", "a ", "b ", "c", None]
    assert out[-1] == b"[DONE]"
