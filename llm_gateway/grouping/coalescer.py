"""The in-flight map: which shared call an identical request can join right now.

In-process by nature (a shared call is a task and a buffer in this process): with several
replicas, identical requests meet only when they reach the same replica (see the README's
"Request grouping" and k8s/components/ingress-hash).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial

from llm_gateway.grouping.fanout import SharedCall


class Coalescer:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # grouping.max_waiter_buffer_bytes
        self.joinable: dict[str, SharedCall] = {}
        self.running: set[SharedCall] = set()  # every shared call whose task is not over

    def find(self, key: str) -> SharedCall | None:
        """The call an identical request may join, if one is in flight and still joinable."""
        return self.joinable.get(key)

    def open(self, key: str, *, register: bool,
             on_done: Callable[[SharedCall], Awaitable[None]] | None) -> SharedCall:
        """A new shared call, joinable under ``key`` when ``register``; start it next."""
        shared = SharedCall(self.limit, partial(self._detach, key), on_done)
        if register:
            self.joinable[key] = shared
        self.running.add(shared)
        return shared

    def _detach(self, key: str, shared: SharedCall) -> None:
        if self.joinable.get(key) is shared:
            del self.joinable[key]
        if shared.done:
            self.running.discard(shared)

    async def aclose(self) -> None:
        """Shutdown: cancel what still runs (the backends are closed by now anyway)."""
        tasks = [s.task for s in self.running if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        self.joinable.clear()
        self.running.clear()
