"""A reader that fell behind takes the events waiting for it at once: one SSE write for all,
the same bytes as one by one; an error among them still comes in its turn. Choices of one
job (n > 1) are shaped each under its index, with their own logprobs and finish."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram

from llm_gateway.worker.engines.base import ChoiceEnd, Finished, Piece, TokenLogprob
from llm_gateway.worker.engines.jobs import JobStream, Work
from llm_gateway.worker.shapes import ChatShaper, CompletionShaper
from llm_gateway.worker.streaming import collect, sse_blocks


class _Engine:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


def _stream(items: list) -> JobStream:
    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    work = Work("job", None, queue.put_nowait, asyncio.get_running_loop())
    return JobStream(_Engine(), work, queue)  # type: ignore[arg-type]


def _histogram() -> Histogram:
    return Histogram("t", "t", registry=CollectorRegistry())


PIECES = [Piece("Hel", 1), Piece("", 2), Piece("lo", 3), Piece("!", 4)]
DONE = Finished("stop", 5, 4, 0)


def test_ready_takes_what_waits_and_leaves_an_error_for_its_turn():
    async def go() -> None:
        stream = _stream([PIECES[0], PIECES[1], RuntimeError("boom"), PIECES[2]])
        assert await stream.__anext__() == PIECES[0]
        assert stream.ready() == [PIECES[1]]
        assert stream.ready() == []  # the error is held, not returned
        with pytest.raises(RuntimeError, match="boom"):
            await stream.__anext__()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    asyncio.run(go())


def test_ready_stops_at_finished():
    async def go() -> None:
        stream = _stream([PIECES[0], DONE, PIECES[2]])
        assert [await stream.__anext__(), *stream.ready()] == [PIECES[0], DONE]
        assert stream.ready() == []
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    asyncio.run(go())


SHAPER = ChatShaper("m")  # one id and time for both runs, so their bytes compare


async def _blocks(stream: JobStream) -> list[bytes]:
    return [b async for b in sse_blocks(stream, SHAPER, False, _histogram())]


def test_a_late_reader_writes_the_waiting_tokens_in_one_block():
    async def go() -> tuple[list[bytes], list[bytes]]:
        piled = await _blocks(_stream([*PIECES, DONE]))  # everything waiting already

        queue_items = [*PIECES, DONE]
        stream = _stream([])

        async def feed() -> None:  # one event at a time, the reader keeping up
            for item in queue_items:
                stream._events.put_nowait(item)
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(feed())
        paced = await _blocks(stream)
        await feeder
        return piled, paced

    piled, paced = asyncio.run(go())
    assert b"".join(piled) == b"".join(paced)  # the same bytes either way
    # Head (role chunk), the three texts together, the finish chunk, [DONE]...
    assert len(piled) < len(paced)
    texts = [b for b in piled if b.count(b"data: ") == 3]
    assert len(texts) == 1 and b'"Hel"' in texts[0] and b'"!"' in texts[0]


def _lp(token: str) -> TokenLogprob:
    return TokenLogprob(token, token.encode(), -1.0)


# Two choices, interleaved: choice 1's second token is held back (a possible stop string) and
# released by the flush at its end; choice 0's last token was swallowed by a stop string.
CHOICES = [
    Piece("A", 1, _lp("A"), 0), Piece("B", 5, _lp("B"), 1),
    Piece("", 2, _lp("x"), 0), Piece("", 6, _lp("C"), 1),
    ChoiceEnd(0, "stop", 2), Piece("C", None, None, 1), ChoiceEnd(1, "length", 2),
    Finished("length", 9, 4, 0),
]


def test_streamed_choices_carry_their_index_logprobs_and_finish():
    async def go() -> list[dict]:
        blocks = [b async for b in sse_blocks(_stream(CHOICES), ChatShaper("m", True, 2), True,
                                              _histogram())]
        return [orjson.loads(part[6:]) for part in b"".join(blocks).split(b"\n\n")
                if part.startswith(b"data: {")]

    chunks = asyncio.run(go())
    got = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"],
            [e["token"] for e in (c["choices"][0]["logprobs"] or {}).get("content", [])])
           for c in chunks[:-1]]
    assert got == [
        (0, {"role": "assistant", "content": ""}, None, []),
        (1, {"role": "assistant", "content": ""}, None, []),
        (0, {"content": "A"}, None, ["A"]),
        (1, {"content": "B"}, None, ["B"]),
        (0, {}, "stop", []),  # choice 0's end, as it came; its swallowed token has no entry
        (1, {"content": "C"}, None, ["C"]),
        (1, {}, "length", []),
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 9
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_whole_choices_are_listed_in_order_with_their_own_offsets():
    async def go() -> dict:
        return await collect(_stream(CHOICES), CompletionShaper("m", False, "Q:", 2), True,
                             _histogram())

    body = asyncio.run(go())
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "Q:A", "stop"), (1, "Q:BC", "length")]
    assert [c["logprobs"]["text_offset"] for c in body["choices"]] == [[2], [2, 3]]
    assert body["usage"]["prompt_tokens"] == 9 and body["usage"]["completion_tokens"] == 4
