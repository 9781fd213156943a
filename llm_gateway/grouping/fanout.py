"""One backend call shared by identical requests: each gets its own Result, in its own shape.

The request that starts the call (the leader) makes it inline, which keeps the common case of
nobody joining as cheap as a plain call. An answer that streams is pulled by its readers:
while the leader reads alone it pulls each block itself (no task, no hand-off per block); as
soon as a second member reads, a task of its own pulls it instead, so the leader is just its
first reader: when the leader's client goes away the stream goes on for the others, and it is
cancelled only when its last member leaves. (A leader whose client leaves while it is pulling
for others finishes that one pull first: cancelling it would break the stream for them. A
leader cancelled before the backend answered hands the call over: it is made again in the
background for the members still waiting.) An error, raised or streamed, reaches every member.

A streamed answer goes into a **replay buffer** that every member reads with its own cursor,
at its own pace: once several read, the task appending to it never waits for a reader, so one
slow client cannot slow the others. A member that joins late starts at the beginning and gets
every chunk already sent, then the live ones. The buffer is bounded by
``grouping.max_waiter_buffer_bytes``:

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
import copy
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from llm_gateway.backends.sse import error_event
from llm_gateway.call import Call, Result
from llm_gateway.errors import GatewayError, InternalError, ServiceUnavailable
from llm_gateway.grouping.reader import Reader
from llm_gateway.grouping.replay import Assembly
from llm_gateway.grouping.restream import Renamer
from llm_gateway.grouping.shapes import CACHE_HEADER, assembled, routed, whole_result
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.stream.relay import Relay

log = logging.getLogger(__name__)

Produce = Callable[[Call], Awaitable[Result]]
# Headers one client must not get from another's answer.
_PRIVATE_HEADERS = frozenset({"set-cookie"})
CANCELLED = ServiceUnavailable("The request was cancelled.")


class Owner(Protocol):
    """Where a shared call is joinable and tracked (coalescer.Coalescer)."""

    limit: int  # grouping.max_waiter_buffer_bytes
    running: set[SharedCall]

    def detach(self, shared: SharedCall) -> None: ...


class SharedCall:
    # Most shared calls are led and finished by one request that nobody joins, so what only
    # a member or a reader needs (the events they wait on, a Reader for the leader) is made
    # when one turns up: on the path of every deterministic request, it is measurable.
    def __init__(self, owner: Owner, key: str,
                 on_done: Callable[[SharedCall], None] | None = None) -> None:
        self.owner = owner  # the in-flight map it is joinable in, and its running set
        self.key = key
        self.limit = owner.limit  # grouping.max_waiter_buffer_bytes
        self.on_done = on_done  # after a complete answer (the cache write); never waits
        self.answered = False  # the backend answered (result) or failed (failure)
        self._ready: asyncio.Event | None = None  # set when answered, if anyone waits
        self.result: Result | None = None
        self.failure: BaseException | None = None
        self.blocks: list[bytes] = []  # the replay buffer
        self.first = 0  # sequence number of blocks[0] (blocks before it were dropped)
        self.size = 0  # bytes streamed so far
        self.done = False  # nothing more will be appended
        self.joinable = True
        self._changed: asyncio.Event | None = None  # set and cleared on each append
        self.readers: set[Reader] = set()  # members reading the stream
        self.members = 0  # requests still waiting for or reading this call
        self.task: asyncio.Task[None] | None = None
        self.call: Call | None = None  # the leader's: routing fills in its target model
        # Who pulls a streamed answer from the backend: its only reader, inline (pulling),
        # or, once several read, a task of its own (pumped). See Reader.blocks.
        self.pulling: Reader | None = None
        self.pumped = False
        self.relay: Relay | None = None  # moves a streamed answer into the buffer

    # --- the backend side --------------------------------------------------------------------

    async def lead(self, call: Call, produce: Produce) -> Result:
        """The leader makes the backend call itself: no task and no hand-off for the common
        case of nobody joining. Only a stream is then pumped by a task of its own, so that
        every member, the leader included, reads it at its own pace."""
        self.call = call
        self.members += 1  # the leader: a member leaving meanwhile must not cancel the call
        try:
            result = await self._produce(call, produce)
        except asyncio.CancelledError:
            # The leader went away before the answer. Others waiting still get one: the call
            # is made again for them, in the background (the first one is lost with the
            # leader's task). With uvicorn this happens only at shutdown: a request's task is
            # not cancelled when its client leaves.
            self.members -= 1
            if self.members and not self.done:
                self._spawn(self._run(call, produce))
            elif not self.done:
                self._fail(CANCELLED)
            raise
        except Exception as exc:
            self.members -= 1
            self._fail(exc)
            if isinstance(exc, GatewayError):
                exc.grouping = "miss"  # (the members get copies: "coalesced")
            raise
        self._answered(result)
        self.members -= 1
        if result.stream is None:
            return self._whole(call, "miss", leader=True)
        return await self._member(Reader(self), call, "miss", leader=True)

    @staticmethod
    async def _produce(call: Call, produce: Produce) -> Result:
        result = await produce(call)
        if result.stream is None and result.observers:
            # The backend's own observers (a deployment's in-flight count and tokens, the
            # attempt's span) see a whole answer here: the members get copies of it, which
            # they never see. (A stream's are run by its relay, in _answered.)
            await Relay(result).whole()
        return result

    async def _run(self, call: Call, produce: Produce) -> None:
        """The backend call for the members left when the leader went away."""
        try:
            result = await self._produce(call, produce)
        except asyncio.CancelledError:
            self._fail(CANCELLED)
            raise
        except Exception as exc:
            self._fail(exc)
            return
        self._answered(result)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.task = task
        self.owner.running.add(self)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # Also for a task cancelled before it ran (it never reached _finish); not for a
        # hand-over's call that went on to pump a stream.
        if self.task is task:
            self.owner.running.discard(self)

    def _answered(self, result: Result) -> None:
        self.result = result
        self._signal()
        if result.stream is not None:  # its readers pull it (Reader.blocks), through a relay
            result.observe(_Share(self))
            self.relay = Relay(result)
            return
        self._finish()
        if self.on_done is not None:
            self.on_done(self)

    def _signal(self) -> None:
        self.answered = True
        if self._ready is not None:
            self._ready.set()

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc  # every member raises it (a copy each)
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self._signal()
        self._wake()
        self.owner.detach(self)
        self.owner.running.discard(self)  # at once: its task may take a while to unwind

    def start_pump(self) -> None:
        """Several members read: from now on a task of its own pulls the stream, so that each
        reads at its own pace and none waits for another's client."""
        self.pumped = True
        self._spawn(self._pump())

    async def _pump(self) -> None:
        while await self.pull():
            pass

    async def pull(self) -> bool:
        """One block from the backend into the replay buffer (`_Share` appends it as the
        relay shows it); False once the stream is over."""
        relay = self.relay
        assert relay is not None
        try:
            block = await relay.next()
        except asyncio.CancelledError:
            if self.members:  # cancelled under readers (shutdown): end their streams visibly
                self._append(error_event("The gateway is shutting down.",
                                         code="service_unavailable"))
            await self._close_backend()
            self._finish()
            raise
        except Exception as exc:  # the relay has closed the backend's stream
            log.warning("shared stream failed: %r", exc)
            self._append(error_event("The backend stream failed.", code="stream_error"))
            self._finish()
            return False
        if block is None:
            self._finish()
            return False
        return True

    async def _close_backend(self) -> None:
        if self.relay is not None:
            await self.relay.aclose()

    def _append(self, block: bytes) -> None:
        self.blocks.append(block)
        self.size += len(block)
        if self.size > self.limit:
            if self.joinable:
                self.stop_joins()
            self._bound()
        self._wake()

    def _wake(self) -> None:
        # Event.set() wakes every reader waiting now; clearing at once re-arms it for the next
        # block (a reader checks the buffer before it waits, so it misses nothing).
        changed = self._changed
        if changed is not None:
            changed.set()
            changed.clear()

    def changed(self) -> asyncio.Event:
        """What a reader waits on for the next block (or the end)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

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

    def stop_joins(self) -> None:
        """No identical request may join it from now on."""
        self.joinable = False
        self.owner.detach(self)

    def cancel(self) -> None:
        """Nobody is left to read it: stop the backend."""
        self.stop_joins()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif (self.result is not None and self.result.stream is not None
              and self.pulling is None and not self.done):
            self._finish()  # a stream nobody pulls now: close it in the background
            self._spawn(self._close_backend())

    # --- the members' side -------------------------------------------------------------------

    async def join(self, call: Call) -> Result:
        """A joining member's own Result, once the backend has answered."""
        reader = Reader(self)
        try:
            if not self.answered:
                if self._ready is None:
                    self._ready = asyncio.Event()
                await self._ready.wait()
            if self.failure is not None:
                raise _copy(self.failure)
        except BaseException:
            reader.leave()
            raise
        return await self._member(reader, call, "coalesced", leader=False)

    async def _member(self, reader: Reader, call: Call, kind: str, leader: bool) -> Result:
        """A member's own Result: its own stream, or a whole answer, in the shape it wants."""
        try:
            if self.result is not None and self.result.stream is None:
                reader.leave()
                return self._whole(call, kind, leader)
            result = self.result
            assert result is not None and self.call is not None
            call.target_model = self.call.target_model  # what served it, for the ledger
            headers = _headers(result.headers, kind, leader)
            want_stream = call.stream
            self.readers.add(reader)
            if want_stream:
                if not leader:  # the leader's client gets the answer's id, the others their own
                    reader.rename = Renamer()
                return routed(Result(result.status, headers, stream=reader.blocks(),
                                     media_type=result.media_type, backend=result.backend,
                                     grouping=kind, close=reader.close,
                                     on_gone=reader.client_gone), result)
            reader.collect = True
            assembly = Assembly()
            async for block in reader.blocks():
                assembly.feed(block)
            return routed(assembled(assembly, result.status, headers, kind, result.backend),
                          result)
        except BaseException:
            reader.leave()
            raise


    def _whole(self, call: Call, kind: str, leader: bool) -> Result:
        """A member's own Result from a whole (not streamed) answer."""
        result = self.result
        assert result is not None and self.call is not None
        call.target_model = self.call.target_model  # what served it, for the ledger
        return routed(whole_result(result, call.stream, _headers(result.headers, kind, leader),
                                   kind, fresh=not leader), result)


class _Share(Observer):
    """The backend side of a shared stream: each block into the replay buffer, and the
    cache write (`on_done`) once the answer is over, complete or not (the cache keeps only a
    complete one)."""

    stage = Stage.SHARE
    __slots__ = ("shared",)

    def __init__(self, shared: SharedCall) -> None:
        self.shared = shared

    def block(self, block: Block) -> None:
        self.shared._append(block.raw)

    def ended(self, end: End) -> None:
        # At [DONE], before the stream's end: a client hanging up right after [DONE] (the
        # openai SDK does) would cancel the pull before the end is seen.
        shared = self.shared
        on_done, shared.on_done = shared.on_done, None
        if on_done is not None:
            on_done(shared)


def _copy(exc: BaseException) -> BaseException:
    """A member's own copy of the shared call's failure."""
    if isinstance(exc, GatewayError):
        error = copy.copy(exc)  # raised in several requests: each its own traceback
    else:
        error = InternalError("The server had an error while processing your request.")
    error.attempts = 0  # it made no backend call of its own (as a coalesced answer: 0)
    error.grouping = "coalesced"
    return error


def _headers(headers: list[tuple[str, str]], kind: str, leader: bool) -> list[tuple[str, str]]:
    if leader:
        return [*headers, (CACHE_HEADER, kind)]
    out = [h for h in headers if h[0] not in _PRIVATE_HEADERS]
    out.append((CACHE_HEADER, kind))
    return out
