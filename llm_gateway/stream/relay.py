"""The one loop that moves an answer on: every block through its observers, then out.

The response (`web/responses.py`) drives it for a client; grouping drives one for the backend
side of a shared call. Closing has one path, `aclose`: the source is closed (its generator and
`Result.close`, which releases an unread upstream response) and every observer is told how the
answer ended, exactly once, whatever ended it (the last block, a client leaving, an error, a
cancelled task). A complete answer is reported as soon as its last event (`[DONE]`, a Responses
API stream's final event) is seen, before that block goes out: a client that got everything
has its record kept, even if the process dies right after.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING

from llm_gateway.stream.events import Block, Event
from llm_gateway.stream.observer import End

if TYPE_CHECKING:
    from llm_gateway.call import Result

log = logging.getLogger(__name__)

_USAGE = b'"usage"'
_RESPONSE = b'"response.'  # a Responses API event's type (its last one among them)

_TIMEOUT_CODE = "upstream_timeout"


class Relay:
    __slots__ = ("_closed", "_complete", "_ended", "_last", "_pulled", "_stream", "observers",
                 "result", "sse")
    # Per block, on the hot path, a few byte searches (Block.ends, Block.usage_only_events);
    # an event is cut out of its block only where one of them hits, and the last one at the
    # end, for how the stream ended.

    def __init__(self, result: Result) -> None:
        self.result = result
        self.observers = result.observers
        self.sse = (result.media_type or "").startswith("text/event-stream")
        self._stream = result.stream
        self._closed = False
        self._ended = False
        self._complete = False  # its last event, or a usage report, was seen
        self._last: Block | None = None  # the last block (for its last event)
        self._pulled: AsyncIterator[bytes] | None = None  # the blocks `next` pulls from

    async def whole(self, sent: bool = True) -> None:
        """A whole body: shown to every observer, then ended; ended too ("error") when an
        observer fails or the task is cancelled on the way, so that none waits for ever (the
        meter's report, a worker's or a deployment's release), or when it will not be `sent`."""
        result = self.result
        outcome = "error"
        try:
            for observer in self.observers:
                waiting = observer.whole(result.status, result.body)
                if waiting is not None:
                    await waiting
            if sent:
                outcome = "ok" if result.status < 400 else "upstream_error"
        finally:
            self._end(outcome)

    async def unsent(self) -> None:
        """The answer will never reach its client: the response path failed after the call
        returned. A stream is closed unread; a whole body is still shown to the observers (the
        backend spent its tokens: the ledger keeps them); either ends "error"."""
        if self._stream is None:
            await self.whole(sent=False)
        else:
            await self.aclose("error")

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The blocks as the client gets them, observed; the stream is closed once it is over.
        A failure of the source closes it (outcome "error") and is raised. (A generator: on
        the hot path, resuming one costs less than a coroutine per block, as in `next`.)"""
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[bytes]:
        stream = self._stream
        assert stream is not None
        try:
            async for raw in stream:
                block, done, waiting = self._see(raw)
                if waiting is not None:
                    for each in waiting:
                        await each
                if done:
                    self._end("ok")
                out = block.out()
                if out:
                    yield out
        except Exception:
            await self.aclose("error")
            raise
        await self.aclose(self._ending())

    async def next(self) -> bytes | None:
        """The next block as the client gets it, observed; None once the stream is over
        (closed by then). A failure of the source closes it (outcome "error") and is raised."""
        blocks = self._pulled
        if blocks is None:
            blocks = self._pulled = self._blocks()
        return await anext(blocks, None)

    def _see(self, raw: bytes) -> tuple[Block, bool, list[Awaitable[None]] | None]:
        """One block shown to every observer: whether it ends the answer, and what must be
        awaited before it goes out."""
        block = Block(raw, self.sse)
        done = False
        if self.sse:
            self._last = block
            # Most blocks are content alone: three byte searches let them through.
            if b"[DONE]" in raw or _USAGE in raw or _RESPONSE in raw:
                done = block.ends
                if done or block.usage_only_events():
                    self._complete = True  # (usage: for a backend that sends no [DONE])
        waiting: list[Awaitable[None]] | None = None
        for observer in self.observers:
            pending = observer.block(block)
            if pending is not None:
                if waiting is None:
                    waiting = []
                waiting.append(pending)
        return block, done, waiting

    def gone(self) -> bool:
        """The client left: whether its task may be cancelled now (grouping may say no)."""
        on_gone = self.result.on_gone
        return on_gone is None or on_gone()

    async def aclose(self, outcome: str | None = None) -> None:
        """Close the source and end the answer, once. Without an outcome the client left: a
        complete answer still counts as "ok" (SDKs hang up right after [DONE])."""
        try:
            if not self._closed:
                self._closed = True
                try:
                    if self._stream is not None:
                        with contextlib.suppress(Exception):
                            await self._stream.aclose()  # type: ignore[attr-defined]
                finally:
                    result = self.result
                    close, result.close = result.close, None
                    if close is not None:
                        with contextlib.suppress(Exception):
                            await close()
        finally:
            self._end(outcome or ("ok" if self._complete else "client_gone"))

    def _ending(self) -> str:
        """How a stream that simply stopped ended."""
        if not self.sse:
            return "ok" if self.result.status < 400 else "upstream_error"
        last = self._last_event()
        if last is not None and last.is_error:
            return "timeout" if last.error_code() == _TIMEOUT_CODE else "upstream_error"
        return "ok" if self._complete else "upstream_error"  # stopped without its end

    def _last_event(self) -> Event | None:
        return self._last.last_event if self._last is not None else None

    def _end(self, outcome: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.result.ended = True
        end = End(outcome, self._last)
        for observer in self.observers:
            try:
                observer.ended(end)
            except Exception:
                log.exception("an observer failed at the end of an answer")
        # Observers hold their result (the meter, through its report's closure too), and the
        # result holds them: a cycle that left every answer's objects (spans included) to the
        # garbage collector. Told the end, they are done with.
        self.observers.clear()
