"""What the request span reads off the answer (answer.py), and what it does not parse."""

from __future__ import annotations

import orjson

from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End
from llm_gateway.tracing.answer import PARSE_LIMIT, AnswerWatch
from llm_gateway.tracing.spans import RecordedSpan


def _span() -> RecordedSpan:
    return RecordedSpan(lambda _s: None, b"\x01" * 16, b"", "chat m", 2, None, None)


def test_a_small_answer_is_read_whole():
    span = _span()
    body = orjson.dumps({"id": "c-1", "object": "chat.completion", "model": "m-2024",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "hi"}}]})
    AnswerWatch(span, False).whole(200, body)
    assert span.attributes == {"gen_ai.response.id": "c-1", "gen_ai.response.model": "m-2024",
                               "gen_ai.response.finish_reasons": ("stop",)}


def test_a_big_answer_is_not_parsed_but_named():
    embeddings = orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.123456] * 1536}
                 for i in range(40)],
        "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
    assert len(embeddings) > PARSE_LIMIT
    span = _span()
    AnswerWatch(span, False).whole(200, embeddings)
    assert span.attributes == {"gen_ai.response.model": "text-embedding-3-small"}
    long_chat = orjson.dumps({
        "id": "c-2", "model": "m", "choices": [{"message": {"content": "x" * PARSE_LIMIT,
                                                            "model": "not this"}}]})
    span = _span()
    AnswerWatch(span, False).whole(200, long_chat)
    assert span.attributes == {"gen_ai.response.id": "c-2", "gen_ai.response.model": "m"}


def test_a_stream_is_read_from_its_first_chunk_only():
    chunk = b'data: {"id":"c-3","model":"m","choices":[{"delta":{"content":"a"}}]}\n\n'
    block = Block(chunk * 30 + b"data: [DONE]\n\n")
    span = _span()
    watch = AnswerWatch(span, False)
    watch.block(block)
    watch.block(Block(chunk))
    assert span.attributes == {"gen_ai.response.id": "c-3", "gen_ai.response.model": "m"}
    assert block._events is None  # the other events were never cut out


def test_a_streams_finish_reasons_are_found_without_decoding_it():
    def chunk(index: int, reason: str | None, spaced: bool = False) -> bytes:
        data = {"id": "c-4", "model": "m", "choices": [
            {"index": index, "delta": {"content": '"finish_reason":"no"'},
             "finish_reason": reason}]}
        text = orjson.dumps(data)
        return b"data: " + (text.replace(b":", b": ") if spaced else text) + b"\n\n"

    for spaced in (False, True):
        span = _span()
        watch = AnswerWatch(span, False)
        watch.block(Block(chunk(0, None, spaced) * 5))
        watch.block(Block(chunk(0, "stop", spaced) + chunk(1, "length", spaced)
                          + b"data: [DONE]\n\n"))
        watch.ended(End("ok"))
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    recorded = _span()  # record_content: the events are decoded anyway
    watch = AnswerWatch(recorded, True)
    watch.block(Block(chunk(0, None) + chunk(0, "tool_calls")))
    watch.ended(End("ok"))
    assert recorded.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_an_answer_in_another_order_is_parsed_for_its_own_id():
    # llama.cpp's server order: choices (with a tool call's own id) before the answer's id.
    body = orjson.dumps({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}]}}],
        "created": 1, "model": "local", "object": "chat.completion", "id": "chatcmpl-9"})
    span = _span()
    AnswerWatch(span, False).whole(200, body)
    assert span.attributes == {"gen_ai.response.id": "chatcmpl-9",
                               "gen_ai.response.model": "local",
                               "gen_ai.response.finish_reasons": ("tool_calls",)}


def test_text_that_looks_like_fields_is_not_taken_for_them():
    body = orjson.dumps({"id": "c-5", "object": "chat.completion", "created": 1,
                         "choices": [
                             {"index": 0, "finish_reason": "stop", "message": {
                                 "role": "assistant",
                                 "content": '{"model": "fake", "finish_reason": "fake"}'}},
                             {"index": 1, "finish_reason": "length",
                              "message": {"role": "assistant", "content": "x"}}],
                         "model": "real"})
    span = _span()
    AnswerWatch(span, False).whole(200, body)
    assert span.attributes == {"gen_ai.response.id": "c-5", "gen_ai.response.model": "real",
                               "gen_ai.response.finish_reasons": ("stop", "length")}
