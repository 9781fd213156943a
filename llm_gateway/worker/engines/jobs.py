"""The queued units the engines' threads run, and the event stream a submitted job returns.

A `Work` is created on the event loop and run on an engine thread; everything it produces
(each event, the result, or an exception) crosses back with `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import llama_cpp

from llm_gateway.worker.engines.base import Engine, Event, EventStream, Finished


class Work:
    """A queued unit: `run(llama, work)` on the engine thread, its outcome sent to `loop`.

    `run` is None for a generation job that the batching engine's scheduler runs itself.
    """

    __slots__ = ("cancelled", "id", "loop", "run", "sink")

    def __init__(self, id: str, run: Callable[[llama_cpp.Llama, Work], Any] | None,
                 sink: Callable[[Any], None], loop: asyncio.AbstractEventLoop) -> None:
        self.id = id
        self.run = run
        self.sink = sink  # called on the loop with each event, the result, or an exception
        self.loop = loop
        self.cancelled = False  # set on the loop, read by the engine thread (a plain bool)

    def send(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self.loop.call_soon_threadsafe(self.sink, item)


class JobStream(EventStream):
    """The events a `Work` sends to its queue, ending with `Finished` or an exception."""

    def __init__(self, engine: Engine, work: Work, events: asyncio.Queue) -> None:
        self._engine = engine
        self._work = work
        self._events = events
        self._done = False
        self._held: BaseException | None = None  # an error ready() took but did not return

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        item, self._held = self._held or await self._events.get(), None
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if isinstance(item, Finished):
            self._done = True
        return item

    def ready(self) -> list[Event]:
        events: list[Event] = []
        queue = self._events
        while not self._done and self._held is None and not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, BaseException):
                self._held = item
            else:
                events.append(item)
                self._done = isinstance(item, Finished)
        return events

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._engine.cancel(self._work.id)
