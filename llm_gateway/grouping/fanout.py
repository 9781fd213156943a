"""One backend call shared by identical requests: each gets its own Result, in its own shape.

The request that starts the call (the leader) makes it inline, which keeps the common case of
nobody joining as cheap as a plain call; an answer that streams is then pumped by a task of its
own, not by any request's, so the leader is just its first reader: when the leader's client
goes away the stream goes on for the others, and it is cancelled only when its last member
leaves. (A leader cancelled before the backend answered hands the call over: it is made again
in the background for the members still waiting.) An error, raised or streamed, reaches every
member.

A streamed answer goes into a **replay buffer** that every member reads with its own cursor,
at its own pace: the task appending to it never waits for a reader, so one slow client cannot
slow the others. A member that joins late starts at the beginning and gets every chunk already
sent, then the live ones. The buffer is bounded by ``grouping.max_waiter_buffer_bytes``:

* while the stream is within that size, the buffer is kept whole and the call can be joined;
* past it, the call can no longer be joined (an identical request leads a call of its own),
  the buffer drops what every reader has read, and a reader that falls more than that many
  bytes behind the live stream is disconnected with an SSE error event
  (``code: stream_lagged``) instead of holding the stream in memory for it.

So one shared stream never holds more than about that many bytes, however many members it
has. A member that wants a whole answer from a streamed call collects the events as they
come (never lagging: nothing waits between it and the buffer) and gets them assembled.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from llm_gateway.backends.sse import error_event
from llm_gateway.call import Call, Result
from llm_gateway.errors import GatewayError, InternalError, ServiceUnavailable
from llm_gateway.grouping.replay import Assembly
from llm_gateway.grouping.shapes import CACHE_HEADER, assembled, whole_result

log = logging.getLogger(__name__)

Produce = Callable[[Call], Awaitable[Result]]
# Headers one client must not get from another's answer.
_PRIVATE_HEADERS = frozenset({"set-cookie"})
CANCELLED = ServiceUnavailable("The request was cancelled.")


class SharedCall:
    def __init__(self, limit: int, detach: Callable[[SharedCall], None],
                 on_done: Callable[[SharedCall], Awaitable[None]] | None = None) -> None:
        self.limit = limit  # grouping.max_waiter_buffer_bytes
        self.detach = detach  # takes it out of the in-flight map (idempotent)
        self.on_done = on_done  # after a complete answer (the cache write)
        self.ready = asyncio.Event()  # the backend answered (result) or failed (failure)
        self.result: Result | None = None
        self.failure: BaseException | None = None
        self.blocks: list[bytes] = []  # the replay buffer
        self.first = 0  # sequence number of blocks[0] (blocks before it were dropped)
        self.size = 0  # bytes streamed so far
        self.done = False  # nothing more will be appended
        self.joinable = True
        self.changed = asyncio.Event()  # set (and at once cleared) on each append
        self.readers: set[Reader] = set()  # members reading the stream
        self.members = 0  # requests still waiting for or reading this call
        self.task: asyncio.Task[None] | None = None
        self.call: Call | None = None  # the leader's: routing fills in its target model

    # --- the backend side --------------------------------------------------------------------

    async def lead(self, call: Call, produce: Produce) -> Result:
        """The leader makes the backend call itself: no task and no hand-off for the common
        case of nobody joining. Only a stream is then pumped by a task of its own, so that
        every member, the leader included, reads it at its own pace."""
        self.call = call
        reader = Reader(self)
        try:
            result = await produce(call)
        except asyncio.CancelledError:
            # The leader went away before the answer. Others waiting still get one: the call
            # is made again for them, in the background (the first one is lost with the
            # leader's task). With uvicorn this happens only at shutdown: a request's task is
            # not cancelled when its client leaves.
            reader.leave()
            if self.members and not self.done:
                self.task = asyncio.get_running_loop().create_task(self._run(call, produce))
            elif not self.done:
                self._fail(CANCELLED)
            raise
        except Exception as exc:
            self._fail(exc)
            reader.leave()
            raise
        await self._answered(result)
        return await self._member(reader, call, "miss", leader=True)

    async def _run(self, call: Call, produce: Produce) -> None:
        """The backend call for the members left when the leader went away."""
        try:
            result = await produce(call)
        except asyncio.CancelledError:
            self._fail(CANCELLED)
            raise
        except Exception as exc:
            self._fail(exc)
            return
        await self._answered(result)

    async def _answered(self, result: Result) -> None:
        self.result = result
        self.ready.set()
        if result.stream is not None:
            self.task = asyncio.get_running_loop().create_task(self._stream(result))
            return
        self._finish()
        if self.on_done is not None:
            await self.on_done(self)

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc  # every member raises it (a copy each)
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self.ready.set()
        self._wake()
        self.detach(self)

    async def _stream(self, result: Result) -> None:
        try:
            await self._pump(result)
        finally:
            self._finish()
        if self.on_done is not None:
            await self.on_done(self)

    async def _pump(self, result: Result) -> None:
        stream = result.stream
        assert stream is not None
        try:
            async for block in stream:
                self._append(block)
        except asyncio.CancelledError:
            if self.members:  # shutting down under readers: end their streams visibly
                self._append(error_event("The gateway is shutting down.",
                                         code="service_unavailable"))
            raise
        except Exception as exc:
            log.warning("shared stream failed: %r", exc)
            self._append(error_event("The backend stream failed.", code="stream_error"))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                await result.aclose()

    def _append(self, block: bytes) -> None:
        self.blocks.append(block)
        self.size += len(block)
        if self.size > self.limit:
            if self.joinable:
                self.joinable = False
                self.detach(self)
            self._bound()
        self._wake()

    def _wake(self) -> None:
        # Event.set() wakes every reader waiting now; clearing at once re-arms it for the next
        # block (a reader checks the buffer before it waits, so it misses nothing).
        self.changed.set()
        self.changed.clear()

    def _bound(self) -> None:
        """Drop what every reader has read; disconnect readers too far behind."""
        low = self.first + len(self.blocks)
        for reader in self.readers:
            if reader.dropped:
                continue
            if not reader.collect and self.size - reader.consumed > self.limit:
                reader.dropped = True
                continue
            low = min(low, reader.pos)
        if low > self.first:
            del self.blocks[: low - self.first]
            self.first = low

    def cancel(self) -> None:
        self.joinable = False
        self.detach(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # --- the members' side -------------------------------------------------------------------

    async def join(self, call: Call) -> Result:
        """A joining member's own Result, once the backend has answered."""
        reader = Reader(self)
        try:
            if not self.ready.is_set():
                await self.ready.wait()
            if self.failure is not None:
                raise _copy(self.failure)
        except BaseException:
            reader.leave()
            raise
        return await self._member(reader, call, "coalesced", leader=False)

    async def _member(self, reader: Reader, call: Call, kind: str, leader: bool) -> Result:
        """A member's own Result: its own stream, or a whole answer, in the shape it wants."""
        want_stream = call.stream
        try:
            result = self.result
            assert result is not None and self.call is not None
            call.target_model = self.call.target_model  # what served it, for the ledger
            headers = _headers(result.headers, kind, leader)
            if result.stream is None:
                reader.leave()
                return whole_result(result, want_stream, headers, kind)
            self.readers.add(reader)
            if want_stream:
                return Result(result.status, headers, stream=reader.blocks(),
                              media_type=result.media_type, backend=result.backend,
                              grouping=kind, close=reader.close)
            reader.collect = True
            assembly = Assembly()
            async for block in reader.blocks():
                assembly.feed(block)
            return assembled(assembly, result.status, headers, kind, result.backend)
        except BaseException:
            reader.leave()
            raise


class Reader:
    """One member: its cursor in the replay buffer."""

    __slots__ = ("collect", "consumed", "dropped", "left", "pos", "shared")

    def __init__(self, shared: SharedCall) -> None:
        self.shared = shared
        self.pos = shared.first  # 0 while the call can be joined: the whole stream
        self.consumed = 0
        self.collect = False  # collects a whole answer: never dropped for lagging
        self.dropped = False
        self.left = False
        shared.members += 1

    async def blocks(self) -> AsyncIterator[bytes]:
        shared = self.shared
        try:
            while True:
                if self.dropped:
                    yield error_event(
                        f"This client fell more than {shared.limit} bytes behind the shared "
                        "stream it was reading and was disconnected.", code="stream_lagged")
                    return
                end = shared.first + len(shared.blocks)
                if self.pos < end:
                    pending = shared.blocks[self.pos - shared.first:]
                    block = pending[0] if len(pending) == 1 else b"".join(pending)
                    self.pos = end
                    self.consumed += len(block)
                    yield block
                elif shared.done:
                    return
                else:
                    await shared.changed.wait()
        finally:
            self.leave()

    async def close(self) -> None:
        self.leave()

    def leave(self) -> None:
        if self.left:
            return
        self.left = True
        shared = self.shared
        shared.readers.discard(self)
        shared.members -= 1
        if shared.members == 0 and not shared.done:
            shared.cancel()  # nobody is left to read it: stop the backend


def _copy(exc: BaseException) -> BaseException:
    if isinstance(exc, GatewayError):
        return copy.copy(exc)  # raised in several requests: each its own traceback
    return InternalError("The server had an error while processing your request.")


def _headers(headers: list[tuple[str, str]], kind: str, leader: bool) -> list[tuple[str, str]]:
    out = [h for h in headers if leader or h[0] not in _PRIVATE_HEADERS]
    out.append((CACHE_HEADER, kind))
    return out
