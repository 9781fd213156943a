"""meter() and ask_for_usage() on synthetic streams: what the client gets, what is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from llm_gateway.accounting import metering, tokens
from llm_gateway.accounting.metering import Metered, ask_for_usage, meter
from llm_gateway.backends.sse import error_event
from llm_gateway.call import Call, Result
from llm_gateway.stream.relay import Relay
from llm_gateway.usage import Usage

DONE = b"data: [DONE]\n\n"
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about the sea, in a few words."}]


def chat_call(*, wants_usage: bool = False, model: str = "gpt-4o-mini",
              endpoint: str = "/chat/completions", body: dict | None = None) -> Call:
    body = body if body is not None else {"model": model, "messages": MESSAGES, "stream": True}
    call = Call(operation="createChatCompletion", endpoint=endpoint, model=model, body=body,
                raw=orjson.dumps(body), stream=True, request_id="req_test")
    call.wants_usage = wants_usage
    return call


def event(obj: dict, newline: bytes = b"\n") -> bytes:
    return b"data: " + orjson.dumps(obj) + newline + newline


def delta(text: str, finish: str | None = None) -> bytes:
    return event({"id": "c1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}],
        "usage": None})


USAGE_CHUNK = event({"id": "c1", "object": "chat.completion.chunk", "choices": [],
                     "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25,
                               "prompt_tokens_details": {"cached_tokens": 8}}})


async def blocks_of(*blocks: bytes, then: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block
    if then is not None:
        await then.wait()  # a stream that goes on (the client leaves first)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Metered] = []
        self.tasks: set[asyncio.Task] = set()

    def __call__(self, metered: Metered) -> None:
        self.calls.append(metered)

    async def one(self) -> Metered:
        await metering.drain(self.tasks)
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


async def run(call: Call, *blocks: bytes, backends: dict | None = None,
              backend: str = "openai") -> tuple[bytes, Recorder]:
    rec = Recorder()
    result = Result(200, stream=blocks_of(*blocks), media_type="text/event-stream",
                    backend=backend)
    relay = Relay(meter(call, result, backends or {}, rec, tasks=rec.tasks))
    out = b"".join([b async for b in relay])
    await relay.aclose()
    return out, rec


# -- ask_for_usage ---------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "wants"), [
    (None, False), ({}, False), ({"include_usage": False}, False),
    ({"include_usage": True}, True), ({"include_obfuscation": False}, False)])
def test_ask_for_usage_sets_include_usage_in_body_and_raw(options, wants) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    if options is not None:
        body["stream_options"] = options
    call = chat_call(body=body, wants_usage=True)
    ask_for_usage(call)
    assert call.wants_usage is wants
    sent = orjson.loads(call.payload())
    assert sent["stream_options"]["include_usage"] is True
    assert call.body["stream_options"]["include_usage"] is True
    for key, value in (options or {}).items():  # the client's other options are kept
        if key != "include_usage":
            assert sent["stream_options"][key] == value


def test_ask_for_usage_leaves_other_calls_alone() -> None:
    whole = chat_call(body={"model": "m", "messages": MESSAGES}, wants_usage=True)
    whole.stream = False
    responses = chat_call(endpoint="/responses", body={"model": "m", "input": "hi",
                                                       "stream": True}, wants_usage=True)
    for call in (whole, responses):
        raw = call.raw
        ask_for_usage(call)
        assert call.raw is raw
        assert call.wants_usage is True


def test_a_renamed_model_still_asks_for_usage() -> None:
    call = chat_call()
    call.target_model = "gpt-4o"
    ask_for_usage(call)
    sent = orjson.loads(call.payload())
    assert sent["model"] == "gpt-4o"
    assert sent["stream_options"] == {"include_usage": True}


# -- whole streams -----------------------------------------------------------------------------

async def test_usage_chunk_in_the_middle_of_a_block_is_cut_out_alone() -> None:
    head = delta("") + delta("The sea")
    tail = delta(" is big.") + delta("", "stop") + USAGE_CHUNK + DONE
    out, rec = await run(chat_call(), head, tail)
    assert out == head + delta(" is big.") + delta("", "stop") + DONE
    m = await rec.one()
    assert m.usage == Usage(21, 4, 8, 25)
    assert (m.partial, m.outcome, m.status) == (False, "ok", 200)
    assert m.first_token_at is not None and m.first_token_at <= m.ended_at


async def test_a_block_holding_only_the_usage_chunk_is_dropped() -> None:
    out, rec = await run(chat_call(), delta("Hi"), delta("", "stop"), USAGE_CHUNK, DONE)
    assert out == delta("Hi") + delta("", "stop") + DONE
    assert (await rec.one()).usage.total == 25


async def test_crlf_framed_usage_chunk_is_cut_out() -> None:
    crlf_usage = USAGE_CHUNK.replace(b"\n", b"\r\n")
    done = DONE.replace(b"\n", b"\r\n")
    first = delta("Hi").replace(b"\n", b"\r\n")
    out, rec = await run(chat_call(), first + crlf_usage + done)
    assert out == first + done
    assert (await rec.one()).usage.completion == 4


async def test_client_that_asked_gets_the_usage_chunk_untouched() -> None:
    blocks = (delta("Hi"), delta("", "stop") + USAGE_CHUNK + DONE)
    out, rec = await run(chat_call(wants_usage=True), *blocks)
    assert out == b"".join(blocks)
    assert out.count(b'"choices":[]') == 1
    assert (await rec.one()).usage == Usage(21, 4, 8, 25)


async def test_responses_stream_usage_comes_from_its_last_event() -> None:
    call = chat_call(endpoint="/responses", wants_usage=True,
                     body={"model": "gpt-4o", "input": "hi", "stream": True})
    created = b"event: response.created\n" + event({"type": "response.created",
                                                     "response": {"id": "r1", "usage": None}})
    text = b"event: response.output_text.delta\n" + event(
        {"type": "response.output_text.delta", "delta": "Hello"})
    done = b"event: response.completed\n" + event({"type": "response.completed", "response": {
        "id": "r1", "usage": {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}}})
    out, rec = await run(call, created, text, done)
    assert out == created + text + done
    m = await rec.one()
    assert (m.usage, m.partial, m.outcome) == (Usage(7, 2, 0, 9), False, "ok")


async def test_whole_body_is_reported_before_it_is_sent() -> None:
    rec = Recorder()
    body = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    await Relay(meter(chat_call(), Result(200, body=body), {}, rec)).whole()
    assert rec.calls == [Metered(Usage(3, 2, 0, 5), False, None, rec.calls[0].ended_at, 200,
                                 "ok")]
    await Relay(meter(chat_call(), Result(429, body=b'{"error": {}}'), {}, rec)).whole()
    assert (rec.calls[1].usage, rec.calls[1].outcome) == (None, "upstream_error")


# -- streams that end early ----------------------------------------------------------------------

async def test_client_gone_counts_prompt_and_streamed_text_with_tiktoken() -> None:
    rec = Recorder()
    never = asyncio.Event()
    pieces = ["The sea", " is wide and deep", ", and full of fish."]
    result = Result(200, stream=blocks_of(delta(""), *(delta(p) for p in pieces), then=never),
                    backend="openai")
    call = chat_call()
    relay = Relay(meter(call, result, {}, rec, tasks=rec.tasks))
    got = [await relay.next() for _ in range(4)]
    assert all(got)
    await relay.aclose()  # the client went away
    m = await rec.one()
    enc = tokens.encoding("gpt-4o-mini")
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert m.usage.completion == len(enc.encode("".join(pieces)))
    assert m.usage.prompt == tokens.prompt_tokens("/chat/completions", call.body, enc)
    assert m.usage.prompt > 10
    assert (m.partial, m.outcome) == (True, "client_gone")


async def test_cancelled_reader_is_client_gone() -> None:
    rec = Recorder()
    never = asyncio.Event()
    result = Result(200, stream=blocks_of(delta("Hello"), then=never), backend="openai")
    relay = Relay(meter(chat_call(), result, {}, rec, tasks=rec.tasks))

    first = asyncio.Event()

    async def read() -> None:
        try:
            async for _ in relay:
                first.set()  # then waits for the next block, which never comes
        finally:
            await relay.aclose()  # what the response does, however it ends

    reader = asyncio.ensure_future(read())
    await first.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    m = await rec.one()
    assert (m.partial, m.outcome, m.usage.completion) == (True, "client_gone", 1)


@pytest.mark.parametrize(("ending", "outcome"), [
    (error_event("upstream broke off the stream", code="upstream_unavailable"),
     "upstream_error"),
    (error_event("stalled", type_="timeout", code="upstream_timeout"), "timeout"),
    (b"", "upstream_error"),  # just stopped, no [DONE]
])
async def test_stream_failing_midway_is_partial(ending: bytes, outcome: str) -> None:
    blocks = [delta("One two three")] + ([ending] if ending else [])
    _out, rec = await run(chat_call(model="gpt-4"), *blocks)
    m = await rec.one()
    enc = tokens.encoding("gpt-4")
    assert (m.partial, m.outcome) == (True, outcome)
    assert m.usage.completion == len(enc.encode("One two three"))


async def test_local_backend_is_asked_what_it_counted() -> None:
    class Worker:
        asked: list[str] = []

        async def usage_of(self, call_id: str) -> Usage | None:
            self.asked.append(call_id)
            return Usage(40, 7, 0, 47)

    backend = Worker()
    call = chat_call()
    _out, rec = await run(call, delta("Hi"), backends={"smol": backend}, backend="smol")
    m = await rec.one()
    assert backend.asked == [call.call_id]  # the call's own id, not its request id
    assert (m.usage, m.partial, m.outcome) == (Usage(40, 7, 0, 47), True, "upstream_error")


async def test_backend_that_cannot_tell_falls_back_to_counting() -> None:
    class Forgetful:
        async def usage_of(self, call_id: str) -> Usage | None:
            raise RuntimeError("worker gone")

    _out, rec = await run(chat_call(), delta("Hi there"), backends={"smol": Forgetful()},
                         backend="smol")
    m = await rec.one()
    assert m.partial and m.usage.completion == 2


async def test_unread_stream_closed_is_reported_once() -> None:
    rec = Recorder()
    closed: list[bool] = []

    async def inner_close() -> None:
        closed.append(True)

    result = Result(200, stream=blocks_of(delta("Hi")), backend="openai", close=inner_close)
    await Relay(meter(chat_call(), result, {}, rec, tasks=rec.tasks)).aclose()  # never read
    m = await rec.one()
    assert closed == [True]
    assert (m.partial, m.outcome, m.usage.completion, m.first_token_at) == \
        (True, "client_gone", 0, None)


async def test_completions_text_and_tool_calls_are_counted() -> None:
    chunks = [
        event({"choices": [{"index": 0, "text": "Once upon"}]}),
        event({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": "get_weather", "arguments": '{"city":'}}]}}]}),
        event({"type": "response.output_text.delta", "delta": " a time"}),
        event({"type": "response.audio.delta", "delta": "AAAA"}),
    ]
    assert tokens.streamed_text([b"".join(chunks), DONE]) == \
        'Once uponget_weather{"city": a time'


async def test_tokenizer_failure_degrades_to_an_estimate(monkeypatch) -> None:
    def broken(name: str):
        raise OSError("no file")

    monkeypatch.setattr(tokens, "_load", broken)
    monkeypatch.setattr(tokens, "_failed", set())
    assert tokens.encoding("gpt-4o") is None
    assert tokens.count_text("x" * 40, None) == 10
    _out, rec = await run(chat_call(), delta("y" * 20))
    m = await rec.one()
    assert m.usage.completion == 5 and m.partial


async def test_a_chunk_without_choices_or_usage_is_left_alone() -> None:
    filtered = event({"id": "", "object": "", "choices": [], "prompt_filter_results": [],
                      "usage": None})
    out, rec = await run(chat_call(), filtered + delta("Hi"), delta("", "stop") + USAGE_CHUNK
                         + DONE)
    assert out == filtered + delta("Hi") + delta("", "stop") + DONE
    assert (await rec.one()).usage.prompt == 21
