"""Engine events -> SSE blocks or one whole body; and dropping work whose client went away.

Streams end as OpenAI's do: content chunks, then a chunk with the finish reason and an empty
delta, the usage chunk only when asked, then `[DONE]`. A failure after the first byte ends
the stream with an error event and no `[DONE]`. With n > 1 choices, their chunks interleave
as the engine produces them, each naming its choice's `index`, and each choice's finish
chunk comes when that choice ends (`ChoiceEnd`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from prometheus_client import Histogram

from llm_gateway.backends.sse import DONE, error_event
from llm_gateway.errors import InternalError, ServiceUnavailable
from llm_gateway.worker.engines.base import (
    ChoiceEnd,
    EngineClosed,
    Event,
    EventStream,
    Finished,
    Piece,
    TokenLogprob,
)
from llm_gateway.worker.shapes import ChatShaper, CompletionShaper, sse

log = logging.getLogger(__name__)

T = TypeVar("T")
Shaper = ChatShaper | CompletionShaper


STOPPED_EARLY = "The worker stopped before the generation ended."


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class _Logprobs:
    """Token logprobs wait for their text: tokens swallowed by a stop string are dropped."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.pending: list[TokenLogprob] = []
        self.released: list[TokenLogprob] = []

    def add(self, piece: Piece) -> list[TokenLogprob] | None:
        """Record the piece; with text, return (and release) the entries it settles."""
        if not self.wanted:
            return None
        if piece.logprob is not None:
            self.pending.append(piece.logprob)
        if not piece.text:
            return None
        out, self.pending = self.pending, []
        self.released.extend(out)
        return out


class _Choices:
    """Per choice: its logprobs waiting for text, its text so far, its finish reason."""

    def __init__(self, count: int, logprobs: bool) -> None:
        self.logprobs = [_Logprobs(logprobs) for _ in range(count)]
        self.texts: list[list[str]] = [[] for _ in range(count)]
        self.finish: list[str | None] = [None] * count


async def _batches(stream: EventStream, histogram: Histogram) -> AsyncIterator[list[Event]]:
    """The events as they come, each with those already waiting behind it.

    A reader that keeps up gets one event at a time; one that fell behind (a busy event
    loop) gets what piled up in one go, and writes it at once.
    Ends after `Finished`. The histogram gets the time between tokens as the reader sees it.
    """
    last = None
    async for first in stream:
        events = [first, *stream.ready()]
        for event in events:
            if isinstance(event, Piece) and event.token_id is not None:
                now = time.perf_counter()
                if last is not None:
                    histogram.observe(now - last)
                last = now
        yield events
        if isinstance(events[-1], Finished):
            return


def _cut_short(finished: Finished | None) -> bool:
    return finished is None or finished.finish_reason == "cancelled"


async def sse_blocks(stream: EventStream, shaper: Shaper, logprobs: bool,
                     histogram: Histogram) -> AsyncIterator[bytes]:
    lps = _Choices(shaper.choices, logprobs).logprobs
    finished: Finished | None = None
    ended = False  # a choice's end came on its own (n > 1)
    try:
        for chunk in shaper.head():
            yield sse(chunk)
        async for events in _batches(stream, histogram):
            blocks = []
            for event in events:
                if isinstance(event, Finished):
                    finished = event
                elif isinstance(event, ChoiceEnd):
                    ended = True
                    if event.finish_reason != "cancelled":  # (the stream ends in an error)
                        blocks.append(sse(shaper.end(event.finish_reason, event.index)))
                elif event.text:
                    entries = lps[event.index].add(event)
                    blocks.append(sse(shaper.delta(event.text, entries if logprobs else None,
                                                   event.index)))
                else:
                    lps[event.index].add(event)
            if blocks:
                yield b"".join(blocks)
        if _cut_short(finished):
            yield error_event(STOPPED_EARLY, code="worker_shutdown")
            return
        assert finished is not None
        if not ended:
            yield sse(shaper.end(finished.finish_reason))
        if shaper.include_usage:
            yield sse(shaper.usage_chunk(finished))
        yield DONE
    except Exception as exc:
        yield failure_block(exc)
    finally:
        await stream.aclose()


def closing_blocks(shaper: Shaper, finished: Finished, finish_reason: str) -> bytes:
    """The chunk with the finish reason, the usage chunk when asked, and `[DONE]`."""
    blocks = [sse(shaper.end(finish_reason))]
    if shaper.include_usage:
        blocks.append(sse(shaper.usage_chunk(finished)))
    return b"".join([*blocks, DONE])


def failure_block(exc: Exception) -> bytes:
    """The error event that ends a stream whose generation failed."""
    if isinstance(exc, EngineClosed):
        return error_event("The worker is shutting down.", code="worker_shutdown")
    log.exception("generation failed mid-stream")
    return error_event(f"The model failed while generating: {exc}")


def failure_error(exc: Exception) -> Exception:
    """The error a whole-body request answers when its generation failed."""
    if isinstance(exc, EngineClosed):
        return ServiceUnavailable("The worker is shutting down.", code="worker_shutdown")
    log.exception("generation failed")
    return InternalError(f"The model failed while generating: {exc}")


async def collect(stream: EventStream, shaper: Shaper, logprobs: bool,
                  histogram: Histogram) -> dict:
    choices = _Choices(shaper.choices, logprobs)
    finished: Finished | None = None
    try:
        async for events in _batches(stream, histogram):
            for event in events:
                if isinstance(event, Finished):
                    finished = event
                elif isinstance(event, ChoiceEnd):
                    choices.finish[event.index] = event.finish_reason
                else:
                    choices.logprobs[event.index].add(event)
                    choices.texts[event.index].append(event.text)
    except Exception as exc:
        raise failure_error(exc) from None
    finally:
        await stream.aclose()
    if _cut_short(finished):
        raise ServiceUnavailable(STOPPED_EARLY, code="worker_shutdown")
    assert finished is not None
    return shaper.answer([
        shaper.choice("".join(texts), choices.finish[i] or finished.finish_reason,
                      choices.logprobs[i].released if logprobs else None, i)
        for i, texts in enumerate(choices.texts)], finished)


async def unless_disconnected(receive: Any, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (raises `ClientGone`)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone()
