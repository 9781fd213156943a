"""stream/relay.py: one loop, observers in stage order, one close, one end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llm_gateway.backends.sse import DONE, error_event
from llm_gateway.call import Result
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.stream.relay import Relay

CHUNK = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


class Seen(Observer):
    def __init__(self, log: list, name: str, stage: Stage) -> None:
        self.log, self.name, self.stage = log, name, stage  # type: ignore[misc]

    def whole(self, status: int, body: bytes) -> None:
        self.log.append((self.name, "whole"))

    def block(self, block: Block) -> None:
        self.log.append((self.name, block.raw))

    def ended(self, end: End) -> None:
        self.log.append((self.name, "end", end.outcome))


async def source(*blocks: bytes, then: asyncio.Event | None = None,
                 closed: list | None = None) -> AsyncIterator[bytes]:
    try:
        for block in blocks:
            yield block
        if then is not None:
            await then.wait()
    finally:
        if closed is not None:
            closed.append("stream")


def streamed(*blocks: bytes, **kw) -> Result:
    return Result(200, stream=source(*blocks, **kw), media_type="text/event-stream")


async def test_observers_run_in_stage_order_and_end_once_at_done() -> None:
    log: list = []
    result = streamed(CHUNK, DONE)
    for name, stage in (("log", Stage.LOG), ("meter", Stage.METER), ("src", Stage.SOURCE)):
        result.observe(Seen(log, name, stage))
    relay = Relay(result)
    assert await relay.next() == CHUNK
    assert log == [("src", CHUNK), ("meter", CHUNK), ("log", CHUNK)]
    log.clear()
    assert await relay.next() == DONE
    # The end is told before the [DONE] block goes out: a record is kept even if we die now.
    assert log == [("src", DONE), ("meter", DONE), ("log", DONE),
                   ("src", "end", "ok"), ("meter", "end", "ok"), ("log", "end", "ok")]
    assert await relay.next() is None
    await relay.aclose()
    assert len([e for e in log if e[1] == "end"]) == 3


@pytest.mark.parametrize(("last", "outcome"), [
    (error_event("broke", code="upstream_unavailable"), "upstream_error"),
    (error_event("stalled", type_="timeout", code="upstream_timeout"), "timeout"),
    (b"", "upstream_error"),  # stopped without [DONE]
    (b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n', "ok"),  # usage, no [DONE]
])
async def test_how_a_stream_that_stopped_ended(last: bytes, outcome: str) -> None:
    log: list = []
    result = streamed(*([CHUNK, last] if last else [CHUNK]))
    result.observe(Seen(log, "o", Stage.METER))
    assert [b async for b in Relay(result)] == ([CHUNK, last] if last else [CHUNK])
    assert log[-1] == ("o", "end", outcome)


async def test_client_gone_closes_source_and_result_once() -> None:
    log: list = []
    closed: list = []

    async def close() -> None:
        closed.append("result")

    result = streamed(CHUNK, then=asyncio.Event(), closed=closed)
    result.close = close
    result.observe(Seen(log, "o", Stage.METER))
    relay = Relay(result)
    reader = asyncio.ensure_future(relay.next())
    assert await reader == CHUNK
    second = asyncio.ensure_future(relay.next())
    await asyncio.sleep(0.01)
    second.cancel()  # the response's task, cancelled when its client leaves
    with pytest.raises(asyncio.CancelledError):
        await second
    await relay.aclose()
    await relay.aclose()
    assert closed == ["stream", "result"]
    assert log[-1] == ("o", "end", "client_gone") and log.count(("o", "end", "client_gone")) == 1


async def test_gone_after_done_is_ok() -> None:
    log: list = []
    result = streamed(CHUNK, DONE, then=asyncio.Event())
    result.observe(Seen(log, "o", Stage.METER))
    relay = Relay(result)
    assert await relay.next() == CHUNK and await relay.next() == DONE
    await relay.aclose()  # the SDK hangs up right after [DONE]
    assert [e for e in log if e[1] == "end"] == [("o", "end", "ok")]


async def test_a_failing_source_ends_in_error_and_raises() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield CHUNK
        raise RuntimeError("connection reset")

    log: list = []
    result = Result(200, stream=broken(), media_type="text/event-stream")
    result.observe(Seen(log, "o", Stage.METER))
    relay = Relay(result)
    await relay.next()
    with pytest.raises(RuntimeError):
        await relay.next()
    assert log[-1] == ("o", "end", "error")


async def test_awaitables_are_awaited_before_the_block_and_drops_apply() -> None:
    order: list = []

    class Claim(Observer):
        stage = Stage.CLAIM

        def block(self, block: Block):
            async def claim() -> None:
                await asyncio.sleep(0)
                order.append("claimed")
            return claim()

    class Strip(Observer):
        stage = Stage.METER

        def block(self, block: Block) -> None:
            for event in block.events:
                if event.usage_only:
                    block.drop(event)

    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n'
    result = streamed(CHUNK + usage, usage, DONE)
    result.observe(Claim())
    result.observe(Strip())
    relay = Relay(result)
    assert await relay.next() == CHUNK
    assert order == ["claimed"]
    assert await relay.next() == DONE  # a block left empty is not sent at all


async def test_whole_body() -> None:
    log: list = []
    result = Result(502, body=b'{"error":{}}')
    result.observe(Seen(log, "o", Stage.METER))
    await Relay(result).whole()
    assert log == [("o", "whole"), ("o", "end", "upstream_error")]


async def test_a_binary_stream_is_not_parsed() -> None:
    log: list = []
    result = Result(200, stream=source(b"\x00\x01data: [DONE]\n\n"), media_type="audio/mpeg")
    result.observe(Seen(log, "o", Stage.METER))
    relay = Relay(result)
    assert await relay.next() == b"\x00\x01data: [DONE]\n\n"
    assert await relay.next() is None
    assert log[-1] == ("o", "end", "ok")
