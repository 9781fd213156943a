"""accounting/usage.py: usage from JSON bodies and SSE events, and the stream watch."""

from __future__ import annotations

import orjson

from llm_gateway.accounting.usage import StreamWatch, Usage, usage_from_body, usage_from_events
from llm_gateway.backends.sse import error_event


def test_chat_body_with_details():
    body = orjson.dumps({
        "id": "x", "choices": [{"message": {"content": 'a "usage": {} in text'}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                  "prompt_tokens_details": {"cached_tokens": 8},
                  "completion_tokens_details": {"reasoning_tokens": 2}},
        "system_fingerprint": "fp"})
    assert usage_from_body(body) == Usage(prompt=12, completion=5, cached=8, total=17)


def test_spaced_json_and_responses_shape():
    body = b'{"object": "response", "usage": {"input_tokens": 7, "output_tokens": 3, ' \
           b'"total_tokens": 10, "input_tokens_details": {"cached_tokens": 0}}, ' \
           b'"metadata": {"usage": "not this one"}}'
    assert usage_from_body(body) == Usage(prompt=7, completion=3, cached=0, total=10)


def test_embeddings_and_missing_usage():
    assert usage_from_body(b'{"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}}') \
        == Usage(prompt=4, completion=0, cached=0, total=4)
    assert usage_from_body(b'{"choices": []}') is None
    assert usage_from_body(b'{"usage": null}') is None
    assert usage_from_body(b"not json") is None


def test_usage_from_events():
    def chunk(usage) -> bytes:
        return b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n"

    block = chunk(None) + chunk({"prompt_tokens": 3, "completion_tokens": 4,
                                 "total_tokens": 7}) + b"data: [DONE]\n\n"
    assert usage_from_events(block) == Usage(3, 4, 0, 7)
    assert usage_from_events(chunk(None) + b"data: [DONE]\n\n") is None
    completed = b"event: response.completed\ndata: " + orjson.dumps({
        "type": "response.completed",
        "response": {"usage": {"input_tokens": 2, "output_tokens": 6, "total_tokens": 8}}})
    assert usage_from_events(completed + b"\n\n") == Usage(2, 6, 0, 8)


async def test_stream_watch_times_the_first_content_and_reads_the_last_usage():
    clock = iter(range(100)).__next__
    blocks = [
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}\n\n',
        b'data: {"choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,'
        b'"total_tokens":2}}\n\ndata: [DONE]\n\n',
    ]

    async def source():
        for block in blocks:
            yield block

    watch = StreamWatch(clock=clock)
    assert [b async for b in watch.relay(source())] == blocks
    assert watch.first_content_at == 0  # the clock's first reading: the second block
    assert watch.usage() == Usage(1, 1, 0, 2)
    assert not watch.ended_in_error


async def test_stream_watch_sees_an_error_end():
    async def source():
        yield b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        yield error_event("upstream broke off the stream", code="upstream_unavailable")

    watch = StreamWatch()
    [b async for b in watch.relay(source())]
    assert watch.ended_in_error and watch.usage() is None
