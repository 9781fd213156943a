"""stream/events.py: a block cut into its events once, each decoded only when asked."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.backends.sse import error_event
from llm_gateway.stream.events import _UNREAD, Block, parse
from llm_gateway.usage import Usage


def data(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_events_of_a_block_with_their_spans() -> None:
    one, two = data({"a": 1}), b"event: x\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\n"
    raw = one + b": a comment\n\n" + two + b"data: [DONE]\n\n"
    events = parse(raw)
    assert [e.data_bytes for e in events] == [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]
    assert [raw[e.start:e.end] for e in events] == [one, two, b"data: [DONE]\n\n"]
    assert events[0].data == {"a": 1} and events[1].data == {"b": 2}
    assert events[2].is_done and not events[0].is_done
    assert parse(b"data:nospace\n\n")[0].data_bytes == b"nospace"


def test_a_payload_is_decoded_once_and_only_when_asked() -> None:
    event = parse(data({"choices": [{"delta": {"content": "hi"}}]}))[0]
    assert event.has_content and event._data is _UNREAD  # answered from the bytes
    first = event.data
    assert event.data is first  # kept


@pytest.mark.parametrize(("obj", "content"), [
    ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, False),
    ({"choices": [{"delta": {"content": "x"}}]}, True),
    ({"choices": [{"text": "x"}]}, True),
    ({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c"}]}}]}, True),
    ({"type": "response.output_text.delta", "delta": "x"}, True),
    ({"choices": [], "usage": {"prompt_tokens": 1}}, False),
])
def test_content(obj, content: bool) -> None:
    assert parse(data(obj))[0].has_content is content


def test_usage_chunk_and_responses_usage() -> None:
    chunk = parse(data({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                                 "total_tokens": 7}}))[0]
    assert chunk.usage == Usage(3, 4, 0, 7) and chunk.usage_only
    last = parse(data({"choices": [{"delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))[0]
    assert last.usage == Usage(1, 1, 0, 2) and not last.usage_only  # choices: kept for all
    completed = parse(b"event: response.completed\n" + data({
        "type": "response.completed",
        "response": {"usage": {"input_tokens": 2, "output_tokens": 6, "total_tokens": 8}}}))[0]
    assert completed.usage == Usage(2, 6, 0, 8) and completed.is_done
    assert parse(data({"choices": [], "usage": None}))[0].usage is None
    assert parse(data({"choices": [{"delta": {"content": '"usage"'}}]}))[0].usage is None


def test_errors_and_ends() -> None:
    timeout = parse(error_event("stalled", type_="timeout", code="upstream_timeout"))[0]
    assert timeout.is_error and timeout.error_code() == "upstream_timeout"
    assert parse(data({"type": "response.failed", "response": {}}))[0].is_error
    assert parse(data({"type": "error", "message": "x"}))[0].is_error
    assert parse(data({"type": "response.incomplete", "response": {}}))[0].is_done
    text = parse(data({"type": "response.output_text.delta", "delta": "response.completed"}))
    assert not text[0].is_done and not text[0].is_error
    assert not parse(data({"choices": [{"delta": {"content": "error"}}]}))[0].is_error


def test_dropping_an_event_cuts_exactly_its_bytes() -> None:
    usage = data({"choices": [], "usage": {"prompt_tokens": 1}})
    raw = data({"a": 1}) + usage + b"data: [DONE]\n\n"
    block = Block(raw)
    assert block.out() is raw  # nothing dropped: the same bytes, no copy
    block.drop(block.events[1])
    assert block.out() == data({"a": 1}) + b"data: [DONE]\n\n"


def test_the_last_event_and_usage_chunks_are_cut_out_alone() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":2}}\r\n\r\n'
    raw = data({"choices": [{"delta": {"content": "a"}}]}) * 20 + usage + b"data: [DONE]\n\n"
    block = Block(raw)
    assert block.ends and block.last_event is not None and block.last_event.is_done
    [chunk] = block.usage_only_events()
    assert raw[chunk.start:chunk.end] == usage and chunk.usage == Usage(2, 0, 0, 2)
    assert block._events is None  # the other 21 events were never cut out
    block.drop(chunk)
    assert block.out() == raw.replace(usage, b"")


def test_ends_only_on_a_last_event() -> None:
    assert not Block(data({"choices": [{"delta": {"content": "[DONE]"}}]})).ends
    assert not Block(data({"type": "response.output_text.delta",
                           "delta": '"response.completed"'})).ends
    assert Block(data({"type": "response.completed", "response": {}})).ends
    trailing = Block(b"data: [DONE]\n\n: a comment after the end\n\n")
    assert trailing.ends  # found among the events
    assert not Block(b"").ends and Block(b"").last_event is None


def test_the_first_event_is_cut_out_alone() -> None:
    first = data({"id": "c1", "model": "m", "choices": []})
    raw = first + data({"choices": [{"delta": {"content": "a"}}]}) * 20 + b"data: [DONE]\n\n"
    block = Block(raw)
    event = block.first_event
    assert event is not None and event.data == {"id": "c1", "model": "m", "choices": []}
    assert raw[event.start:event.end] == first
    assert block._events is None  # the other 21 events were never cut out
    assert Block(b": a comment\n\n" + first).first_event is None  # no data: not an event
    assert Block(b"").first_event is None
    unended = Block(b'data: {"a": 1}')  # no boundary after it
    assert unended.first_event is not None and unended.first_event.data == {"a": 1}
    whole = Block(raw)
    assert whole.events[0] is whole.first_event  # parsed already: the same object
