"""StallGuard: a read that waits past its limit ends in TimeoutError; only the reads are
timed; a cancel from elsewhere stays a cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from llm_gateway.backends.stall import StallGuard


async def pieces(*pauses: float) -> AsyncIterator[int]:
    for n, pause in enumerate(pauses):
        await asyncio.sleep(pause)
        yield n


async def test_a_read_past_the_limit_is_a_timeout():
    guard = StallGuard(0.2)
    items = pieces(0, 0.05, 5)
    try:
        assert [await guard.next(items), await guard.next(items)] == [0, 1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await guard.next(items)
        assert 0.1 < time.monotonic() - started < 1.0
    finally:
        guard.close()


async def test_only_the_reads_are_timed_not_the_callers_own_waits():
    guard = StallGuard(0.2)
    items = pieces(0.1, 0.1, 0.1, 0.1)
    try:
        got = []
        for _ in range(4):
            got.append(await guard.next(items))
            await asyncio.sleep(0.3)  # longer than the limit, but between reads
        assert got == [0, 1, 2, 3] and not guard.stalled
    finally:
        guard.close()


async def test_a_cancel_from_elsewhere_stays_a_cancel():
    guard = StallGuard(10)

    async def read() -> int:
        return await guard.next(pieces(5))

    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    guard.close()
