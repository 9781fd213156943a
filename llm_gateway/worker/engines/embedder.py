"""The embedding side of an engine: its own context (`llama_embed`), its own thread and queue.

Chat never waits for it: the engine thread keeps decoding its sequences while this thread
computes embeddings on a second context of the same model. Requests run one at a time, in
order; those waiting are bounded like the engine's (`QueueFull` at once, a 429 upstairs). A
request whose caller went away is dropped while it waits, and stopped between two inputs
once it runs.

Where CPU is short (a CPU-only worker, more threads than cores), the two threads would share
the cores evenly and chat would slow; so on Linux, where a nice value belongs to one thread,
this thread (and the compute threads llama.cpp starts from it) runs `NICE` steps nicer: chat
keeps its cores, embeddings get what it leaves, and both run at full speed where cores are
free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_gateway.worker.engines.base import EngineClosed, QueueFull
from llm_gateway.worker.engines.llama_embed import EmbeddingContext

log = logging.getLogger(__name__)

NICE = 10  # how much nicer than the process the embedding thread runs (Linux)


class _Request:
    __slots__ = ("cancelled", "future", "inputs", "loop")

    def __init__(self, inputs: Sequence[Sequence[int]], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future) -> None:
        self.inputs = inputs
        self.loop = loop
        self.future = future
        self.cancelled = False  # set on the loop, read by the embedding thread

    def is_cancelled(self) -> bool:
        return self.cancelled

    def settle(self, outcome: Any) -> None:
        def put() -> None:
            if self.future.done():
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self.loop.call_soon_threadsafe(put)


class Embedder:
    """Owns an `EmbeddingContext` and the thread that uses it (closed by `close`)."""

    def __init__(self, context: EmbeddingContext, max_queue: int) -> None:
        self.context = context
        self.max_queue = max_queue
        self.tokens_total = 0  # input tokens embedded (read by the engine's stats)
        self._cond = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._running: _Request | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._main, name="llama-embed", daemon=True)
        self._thread.start()

    async def embed(self, inputs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Unit-length float32 vectors, one per input, in order."""
        loop = asyncio.get_running_loop()
        request = _Request(inputs, loop, loop.create_future())
        with self._cond:
            if self._closing:
                raise EngineClosed("the model is not loaded")
            # As for generation jobs: only requests that cannot start at once count.
            if len(self._waiting) >= self.max_queue + (self._running is None):
                raise QueueFull(f"{len(self._waiting)} embedding requests are already waiting")
            self._waiting.append(request)
            self._cond.notify()
        try:
            return await request.future
        finally:
            request.cancelled = True  # a no-op once it ran; else dropped, or stopped

    def _main(self) -> None:
        _be_nicer(NICE)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting or self._closing)
                if self._closing:
                    break
                request = self._running = self._waiting.popleft()
            try:
                if request.cancelled:
                    continue
                outcome: Any = self.context.embed(request.inputs, request.is_cancelled)
                self.tokens_total += sum(len(t) for t in request.inputs)
            except BaseException as exc:
                if not request.cancelled:
                    log.exception("an embedding request failed")
                outcome = exc
            finally:
                with self._cond:
                    self._running = None
            request.settle(outcome)
        with self._cond:
            left, self._waiting = list(self._waiting), deque()
        for request in left:
            request.settle(EngineClosed("the worker is shutting down"))
        self.context.close()

    def close(self) -> None:
        """Refuse what waits, stop what runs after its decode, free the context; blocks."""
        with self._cond:
            self._closing = True
            if self._running is not None:
                self._running.cancelled = True
            self._cond.notify_all()
        self._thread.join()


def _be_nicer(steps: int) -> None:
    """Lower this thread's CPU priority by `steps` (Linux only: elsewhere the nice value is the
    whole process's, and chat would be lowered too)."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # best effort: a sandbox may refuse it
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + steps))
