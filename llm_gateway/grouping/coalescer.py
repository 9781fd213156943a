"""The in-flight map: which shared call an identical request can join right now.

In-process by nature (a shared call is a task and a buffer in this process): with several
replicas, identical requests meet only when they reach the same replica (see docs/grouping.md
and k8s/components/ingress-hash).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from llm_gateway.grouping.fanout import SharedCall


class Coalescer:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # grouping.max_waiter_buffer_bytes
        self.joinable: dict[str, SharedCall] = {}
        # Shared calls with a task of their own under way (a stream's pump, a call made again
        # for members its leader left): shutdown cancels them. A leader's inline call is its
        # request's, not tracked here.
        self.running: set[SharedCall] = set()

    def find(self, key: str) -> SharedCall | None:
        """The call an identical request may join, if one is in flight and still joinable."""
        return self.joinable.get(key)

    def open(self, key: str, *, register: bool,
             on_done: Callable[[SharedCall], None] | None) -> SharedCall:
        """A new shared call, joinable under ``key`` when ``register``; start it next."""
        shared = SharedCall(self, key, on_done)
        if register:
            self.joinable[key] = shared
        return shared

    def detach(self, shared: SharedCall) -> None:
        """No longer joinable (idempotent)."""
        if self.joinable.get(shared.key) is shared:
            del self.joinable[shared.key]

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
