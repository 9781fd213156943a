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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from llm_gateway.stream.events import Block, Event
from llm_gateway.stream.observer import End

if TYPE_CHECKING:
    from llm_gateway.call import Result

log = logging.getLogger(__name__)

_USAGE = b'"usage"'
_TIMEOUT_CODE = "upstream_timeout"


class Relay:
    __slots__ = ("_closed", "_complete", "_ended", "_last", "_stream", "observers", "result",
                 "sse")

    def __init__(self, result: Result) -> None:
        self.result = result
        self.observers = result.observers
        self.sse = (result.media_type or "").startswith("text/event-stream")
        self._stream = result.stream
        self._closed = False
        self._ended = False
        self._complete = False  # its last event, or a usage report, was seen
        self._last: Event | None = None

    async def whole(self) -> None:
        """A whole body: shown to every observer, then ended."""
        result = self.result
        for observer in self.observers:
            waiting = observer.whole(result.status, result.body)
            if waiting is not None:
                await waiting
        self._end("ok" if result.status < 400 else "upstream_error")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[bytes]:
        while (out := await self.next()) is not None:
            yield out

    async def next(self) -> bytes | None:
        """The next block as the client gets it, observed; None once the stream is over
        (closed by then). A failure of the source closes it (outcome "error") and is raised."""
        stream = self._stream
        assert stream is not None
        while True:
            try:
                raw = await stream.__anext__()
            except StopAsyncIteration:
                await self.aclose(self._ending())
                return None
            except Exception:
                await self.aclose("error")
                raise
            block = Block(raw)
            done = False
            if self.sse:
                for event in block.events:
                    self._last = event
                    if event.is_done:
                        done = True
                    elif _USAGE in event.data_bytes and event.usage is not None:
                        self._complete = True  # (a backend that sends no [DONE])
            for observer in self.observers:
                waiting = observer.block(block)
                if waiting is not None:
                    await waiting
            if done:
                self._complete = True
                self._end("ok")
            out = block.out()
            if out:
                return out

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
        last = self._last
        if last is not None and last.is_error:
            return "timeout" if last.error_code() == _TIMEOUT_CODE else "upstream_error"
        return "ok" if self._complete else "upstream_error"  # stopped without its end

    def _end(self, outcome: str) -> None:
        if self._ended:
            return
        self._ended = True
        end = End(outcome, self._last)
        for observer in self.observers:
            try:
                observer.ended(end)
            except Exception:
                log.exception("an observer failed at the end of an answer")
