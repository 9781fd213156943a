"""What each recent request used, by the gateway's request id, cut-short requests included.

A stream the client abandons never reaches its usage chunk, yet its prompt was evaluated and
some tokens generated; the gateway asks for those counts afterwards
(``GET /v1/internal/usage/{request_id}``). Every generation job's event stream is watched on
its way to the HTTP layer (`watch`): the counts come from the engine's `Finished` event when
it arrives, otherwise from what was seen. When the stream is closed early the job is
cancelled and its stream drained in the background for a moment, so the engine's own count
(which includes tokens generated after the client left) can still land; engines report a
cancelled job's `Finished("cancelled", prompt, generated, cached)` for that.

The log is an LRU bounded by entry count, so memory stays flat however many requests pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from llm_gateway.worker.engines.base import Event, EventStream, Finished, Job, Piece
from llm_gateway.worker.watched import Watching

CAPACITY = 8192  # requests remembered; a cut stream is asked about within seconds
DRAIN_SECONDS = 2.0  # how long a cancelled job may take to report its final counts
MAX_WAIT_SECONDS = 10.0


@dataclass(slots=True)
class RequestUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    partial: bool = False  # the request ended before its generation did
    done: bool = False  # the counts are final
    ended: asyncio.Event | None = None  # made when someone waits for the counts to be final

    def as_json(self, request_id: str) -> dict:
        return {"request_id": request_id, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "cached_tokens": self.cached_tokens, "partial": self.partial,
                "done": self.done}


class UsageLog:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, RequestUsage] = OrderedDict()
        self._drains: set[asyncio.Task] = set()  # strong references to the drain tasks

    def begin(self, request_id: str) -> RequestUsage:
        """A new entry for a request (a repeated id replaces the older one)."""
        entry = self._entries[request_id] = RequestUsage()
        self._entries.move_to_end(request_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry

    @staticmethod
    def end(entry: RequestUsage, *, partial: bool) -> None:
        if entry.done:
            return
        entry.partial = partial
        entry.done = True
        if entry.ended is not None:
            entry.ended.set()

    def record(self, request_id: str, prompt: int, completion: int, cached: int = 0) -> None:
        """A request answered whole, outside `watch` (a library chat handler's usage)."""
        entry = self.begin(request_id)
        entry.prompt_tokens, entry.completion_tokens, entry.cached_tokens = \
            prompt, completion, cached
        self.end(entry, partial=False)

    def get(self, request_id: str) -> RequestUsage | None:
        return self._entries.get(request_id)

    async def wait(self, request_id: str, timeout: float) -> RequestUsage | None:
        """The request's entry once final, or as it stands after ``timeout`` seconds."""
        entry = self._entries.get(request_id)
        if entry is None or entry.done or not timeout > 0:  # (NaN too)
            return entry
        if entry.ended is None:
            entry.ended = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, MAX_WAIT_SECONDS)):
                await entry.ended.wait()
        return entry

    def watch(self, stream: EventStream, request_id: str, job: Job,
              cancel: Callable[[str], None]) -> EventStream:
        """``stream``, counting what it yields; ``cancel`` is the engine's, for `aclose`."""
        return _Watched(self, stream, request_id, job, cancel)

    async def aclose(self) -> None:
        for task in list(self._drains):
            task.cancel()


class _Watched(Watching):
    def __init__(self, log: UsageLog, inner: EventStream, request_id: str, job: Job,
                 cancel: Callable[[str], None]) -> None:
        super().__init__(inner)
        self._log = log
        self._job = job
        self._cancel = cancel
        self._entry = log.begin(request_id)
        self._started = False  # the engine has begun the job: its prompt was evaluated

    def _see(self, event: Event) -> None:
        entry = self._entry
        if isinstance(event, Finished):
            entry.prompt_tokens = event.prompt_tokens
            entry.completion_tokens = event.completion_tokens
            entry.cached_tokens = event.cached_tokens
            self._log.end(entry, partial=event.finish_reason == "cancelled")
            return
        if not self._started and isinstance(self._job.prompt, list):  # text: engine's count
            self._started = True
            entry.prompt_tokens = len(self._job.prompt)
        if isinstance(event, Piece) and event.token_id is not None:
            entry.completion_tokens += 1

    def _stopped(self) -> None:
        self._log.end(self._entry, partial=True)  # ended without Finished (a no-op after it)

    async def aclose(self) -> None:
        if self._entry.done:
            await self._inner.aclose()
            return
        # Cancel, but keep reading: the engine's Finished for a cancelled job carries the
        # tokens it evaluated and generated, including those nobody read.
        self._cancel(self._job.id)
        task = asyncio.get_running_loop().create_task(self._drain())
        self._log._drains.add(task)
        task.add_done_callback(self._log._drains.discard)

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while not self._entry.done:
                    self._see(await self._inner.__anext__())
        except Exception:  # ended, or timed out: a job cancelled before it began never
            pass  # reports, and what was seen stands
        finally:
            self._log.end(self._entry, partial=True)
            await self._inner.aclose()
