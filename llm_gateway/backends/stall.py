"""Reading a body piece by piece, each within a time limit, at the cost of one timer per body.

The transports' own read timeouts do not always hold: after a malformed chunk aiohttp waits
for the end of the body forever. `asyncio.timeout` around each read would bound it, but costs
about 4 µs a read (a timer made and cancelled each time: a fifth of the gateway's CPU for a
short stream, bench/overhead); a guard keeps one timer for the whole body and moves it only
when it fires early (0.2 µs a read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


class StallGuard:
    """`await guard.next(items)`: the next item, or TimeoutError when none came within
    `limit` seconds. Only the wait inside `next` is timed (never the caller's own awaits in
    between), in whichever task calls it. `close` when done."""

    def __init__(self, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None  # the task of the read under way
        self._limit = limit
        self._since: float | None = None  # when the read under way began
        self._handle: asyncio.TimerHandle | None = None
        self.stalled = False

    async def next(self, items: AsyncIterator[T]) -> T:
        self._task = asyncio.current_task()
        self._since = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + self._limit, self._check)
        try:
            return await anext(items)
        except asyncio.CancelledError:
            # Ours (and nobody else's, as asyncio.timeout decides): a stall.
            if self.stalled and self._task is not None and self._task.uncancel() == 0:
                raise TimeoutError(f"nothing came within {self._limit} s") from None
            raise
        finally:
            self._since = None

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None or self._task is None:
            return  # between reads: the next read arms it again
        due = since + self._limit
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self.stalled = True
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
