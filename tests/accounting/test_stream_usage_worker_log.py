"""The worker's usage log on scripted engine streams (no model needed)."""

from __future__ import annotations

import asyncio

import pytest

from llm_gateway.worker import usage_log
from llm_gateway.worker.engines.base import Event, EventStream, Finished, Job, Piece
from llm_gateway.worker.usage_log import UsageLog


class Scripted(EventStream):
    """Events fed by the test; after `cancel`, what a cancelled engine job would still send."""

    def __init__(self, after_cancel: list[Event]) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.after_cancel = after_cancel
        self.closed = False

    def cancel(self, job_id: str) -> None:
        for event in self.after_cancel:
            self.queue.put_nowait(event)

    async def __anext__(self) -> Event:
        if self.closed:
            raise StopAsyncIteration
        return await self.queue.get()

    async def aclose(self) -> None:
        self.closed = True


def job() -> Job:
    return Job(prompt=list(range(12)))


async def test_a_whole_job_reports_the_engine_counts() -> None:
    log = UsageLog()
    inner = Scripted([])
    watched = log.watch(inner, "r1", job(), inner.cancel)
    for event in (Piece("a", 1), Piece("", 2), Finished("stop", 12, 2, 5)):
        inner.queue.put_nowait(event)
    got = [event async for event in _until_finished(watched)]
    assert len(got) == 3
    entry = log.get("r1")
    assert entry.as_json("r1") == {"request_id": "r1", "prompt_tokens": 12,
                                   "completion_tokens": 2, "total_tokens": 14,
                                   "cached_tokens": 5, "partial": False, "done": True}


async def test_a_stream_closed_early_keeps_the_engine_final_count() -> None:
    log = UsageLog()
    inner = Scripted([Piece("c", 3), Finished("cancelled", 12, 3, 0)])
    watched = log.watch(inner, "r2", job(), inner.cancel)
    inner.queue.put_nowait(Piece("a", 1))
    await watched.__anext__()
    entry = log.get("r2")
    assert (entry.prompt_tokens, entry.completion_tokens, entry.done) == (12, 1, False)
    await watched.aclose()  # the client left: cancelled, then drained
    final = await log.wait("r2", 5)
    assert (final.prompt_tokens, final.completion_tokens, final.partial, final.done) == \
        (12, 3, True, True)
    assert inner.closed


async def test_a_job_cancelled_before_it_began_counts_nothing(monkeypatch) -> None:
    monkeypatch.setattr(usage_log, "DRAIN_SECONDS", 0.05)
    log = UsageLog()
    inner = Scripted([])  # a waiting job just leaves the queue: no Finished
    watched = log.watch(inner, "r3", job(), inner.cancel)
    await watched.aclose()
    final = await log.wait("r3", 5)
    assert (final.prompt_tokens, final.completion_tokens, final.partial, final.done) == \
        (0, 0, True, True)


async def test_the_log_is_bounded() -> None:
    log = UsageLog(capacity=2)
    for n in range(3):
        log.record(f"r{n}", 1, 1)
    assert log.get("r0") is None and log.get("r2") is not None
    assert await log.wait("missing", 1) is None


@pytest.mark.parametrize("error", [RuntimeError("model failed"), StopAsyncIteration()])
async def test_a_stream_that_fails_is_final_with_what_was_seen(error) -> None:
    log = UsageLog()

    class Failing(Scripted):
        async def __anext__(self) -> Event:
            if self.queue.empty():
                raise error
            return await self.queue.get()

    inner = Failing([])
    watched = log.watch(inner, "r4", job(), inner.cancel)
    inner.queue.put_nowait(Piece("a", 1))
    await watched.__anext__()
    with pytest.raises(type(error)):
        await watched.__anext__()
    entry = log.get("r4")
    assert (entry.prompt_tokens, entry.completion_tokens, entry.partial, entry.done) == \
        (12, 1, True, True)


async def _until_finished(stream: EventStream):
    while True:
        event = await stream.__anext__()
        yield event
        if isinstance(event, Finished):
            return
