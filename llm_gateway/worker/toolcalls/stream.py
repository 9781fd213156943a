"""A tool-enabled chat's engine events -> OpenAI's chunks (tool_calls deltas) or one body.

The job is an ordinary generation job (it is batched, cancelled and counted like any other);
only its text goes through the syntax's parser on the way out. Streamed, a call arrives as
OpenAI sends them: a first delta with its index, id, type, function name and empty
arguments, then argument fragments as they are generated. The finish reason is
`tool_calls` when the answer made calls.

A marker that is a control token of the model (Mistral's `[TOOL_CALLS]`, Llama's
`<|python_tag|>`) comes out of the engine as a token with no text; its id is turned back
into the marker's text before parsing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from prometheus_client import Histogram

from llm_gateway.backends.sse import error_event
from llm_gateway.errors import ServiceUnavailable
from llm_gateway.worker.engines.base import EventStream, Finished, Piece
from llm_gateway.worker.shapes import ChatShaper, sse
from llm_gateway.worker.streaming import (
    STOPPED_EARLY,
    _batches,
    closing_blocks,
    failure_block,
    failure_error,
)
from llm_gateway.worker.toolcalls.plan import ToolPlan
from llm_gateway.worker.toolcalls.scan import CallArgs, CallStart, Event, Text


class ToolOutput:
    """The parsed answer so far: content, and the calls with their ids and arguments."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.parser = plan.parser()
        self.content: list[str] = []
        self.calls: list[dict] = []  # OpenAI's tool_calls entries, arguments growing
        self.finished: Finished | None = None  # the job's last event, once it came

    def feed(self, piece: Piece) -> list[Event]:
        text = piece.text
        marker = self.plan.markers.get(piece.token_id) if piece.token_id is not None else None
        if marker is not None:
            text += marker  # a control token: the engine gave no text for it
        return self._record(self.parser.push(text)) if text else []

    def close(self) -> list[Event]:
        return self._record(self.parser.close())

    def _record(self, events: list[Event]) -> list[Event]:
        for event in events:
            if isinstance(event, Text):
                self.content.append(event.text)
            elif isinstance(event, CallStart):
                self.calls.append({"id": self.plan.syntax.new_id(), "type": "function",
                                   "function": {"name": event.name, "arguments": ""}})
            elif isinstance(event, CallArgs):
                self.calls[event.index]["function"]["arguments"] += event.text
        return events

    def cut_short(self) -> bool:
        """The job ended without its end (cancelled by anyone but us, or no `Finished`)."""
        finished = self.finished
        return finished is None or (finished.finish_reason == "cancelled"
                                    and not self.parser.finished)

    def finish_reason(self, finished: Finished) -> str:
        if self.calls and (finished.finish_reason == "stop" or self.parser.finished):
            return "tool_calls"
        return finished.finish_reason

    def message(self) -> dict:
        text = "".join(self.content)
        return {"role": "assistant", "content": text if text or not self.calls else None,
                "refusal": None, **({"tool_calls": self.calls} if self.calls else {})}


def _chunks(output: ToolOutput, shaper: ChatShaper, events: list[Event]) -> list[dict]:
    """Events -> chunks; the argument fragments of one call in a row go in one chunk."""
    chunks: list[dict] = []
    for event in events:
        if isinstance(event, Text):
            chunks.append(shaper.delta(event.text, None))
            continue
        if isinstance(event, CallStart):
            call = output.calls[event.index]
            entry = {"index": event.index, "id": call["id"], "type": "function",
                     "function": {"name": event.name, "arguments": ""}}
        elif isinstance(event, CallArgs):
            last = chunks[-1]["choices"][0]["delta"].get("tool_calls") if chunks else None
            if last and last[0]["index"] == event.index and "id" not in last[0]:
                last[0]["function"]["arguments"] += event.text
                continue
            entry = {"index": event.index, "function": {"arguments": event.text}}
        else:
            continue  # CallEnd: nothing to send
        chunk = shaper.delta("", None)
        chunk["choices"][0]["delta"] = {"tool_calls": [entry]}
        chunks.append(chunk)
    return chunks


async def _read(stream: EventStream, output: ToolOutput, cancel: Callable[[], None],
                histogram: Histogram) -> AsyncIterator[list[Event]]:
    """The parsed events of each batch of engine events (`output.finished` at the end).

    Once the parser wants no more (parallel_tool_calls false, the call is complete), the
    job is cancelled; its `Finished` still comes, with the tokens it used.
    """
    stopped = False
    async for batch in _batches(stream, histogram):
        events: list[Event] = []
        for item in batch:
            if isinstance(item, Finished):
                output.finished = item
                events += output.close()
            elif isinstance(item, Piece):  # (a ChoiceEnd: tools take one choice, n = 1)
                events += output.feed(item)
        if output.parser.finished and not stopped and output.finished is None:
            stopped = True
            cancel()
        yield events


async def tool_sse_blocks(stream: EventStream, shaper: ChatShaper, plan: ToolPlan,
                          cancel: Callable[[], None],
                          histogram: Histogram) -> AsyncIterator[bytes]:
    output = ToolOutput(plan)
    try:
        for chunk in shaper.head():
            yield sse(chunk)
        async for events in _read(stream, output, cancel, histogram):
            chunks = _chunks(output, shaper, events)
            if chunks:
                yield b"".join(sse(chunk) for chunk in chunks)
        finished = output.finished
        if finished is None or output.cut_short():
            yield error_event(STOPPED_EARLY, code="worker_shutdown")
        else:
            yield closing_blocks(shaper, finished, output.finish_reason(finished))
    except Exception as exc:
        yield failure_block(exc)
    finally:
        await stream.aclose()


async def tool_collect(stream: EventStream, shaper: ChatShaper, plan: ToolPlan,
                       cancel: Callable[[], None], histogram: Histogram) -> dict:
    output = ToolOutput(plan)
    try:
        async for _ in _read(stream, output, cancel, histogram):
            pass
    except Exception as exc:
        raise failure_error(exc) from None
    finally:
        await stream.aclose()
    finished = output.finished
    if finished is None or output.cut_short():
        raise ServiceUnavailable(STOPPED_EARLY, code="worker_shutdown")
    whole = shaper.whole("", finished, None)
    choice = whole["choices"][0]
    choice["message"] = output.message()
    choice["finish_reason"] = output.finish_reason(finished)
    return whole
