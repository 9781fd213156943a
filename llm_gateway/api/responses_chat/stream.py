"""A chat completions stream as the Responses API's event stream.

`Translator` watches the chat answer's relay (an `Observer`: it reads the events the relay
parsed once, after the meter counted them) and writes the events OpenAI sends, each with its
`sequence_number` and a named SSE `event:` line:

    response.created, response.in_progress,
    per message: response.output_item.added, response.content_part.added,
                 response.output_text.delta ... (response.refusal.delta ...),
                 response.output_text.done, response.content_part.done,
                 response.output_item.done
    per tool call: response.output_item.added, response.function_call_arguments.delta ...,
                   response.function_call_arguments.done, response.output_item.done
    response.completed (response.incomplete at a token limit), with usage.

An error event from the backend becomes `error` then `response.failed`; a chat stream that
stops before its end does too. `blocks` is the stream the client reads: the chat relay is
pulled block by block, and what the translator wrote for each goes out as one block.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from llm_gateway.api.responses_chat.items import as_dict, new_id
from llm_gateway.api.responses_chat.output import (
    Shape,
    call_item,
    message_item,
    refusal_part,
    status_of,
    text_part,
    usage_of,
)
from llm_gateway.stream.events import Block, Event
from llm_gateway.stream.observer import Observer, Stage
from llm_gateway.stream.relay import Relay

log = logging.getLogger(__name__)

_CUT = {"code": "server_error", "message": "The model's answer ended before it was complete."}


class Translator(Observer):
    stage = Stage.LOG  # the last to see each block: after the meter has counted it

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.final: dict[str, Any] | None = None  # the last event's response, once written
        self._out: list[bytes] = []
        self._seq = 0
        self._output: list[dict] = []  # items as they stand
        self._open: dict | None = None  # the item being written (its deltas go out)
        self._part: dict | None = None  # its content part being written
        self._calls: dict[int, dict] = {}  # chat tool call index -> its item
        self._finish: Any = None
        self._usage: dict | None = None
        initial = shape.response("in_progress", [])
        self._emit("response.created", response=initial)
        self._emit("response.in_progress", response=initial)

    # -- the observer ----------------------------------------------------------------------
    def block(self, block: Block) -> None:
        if self.final is None:
            for event in block.events:
                self._event(event)

    def take(self) -> bytes:
        """What was written since the last take, as one block."""
        out, self._out = b"".join(self._out), []
        return out

    def stopped(self) -> None:
        """The chat stream is over: the response ends, well or not."""
        if self.final is not None:
            return
        if self._finish is not None:  # a backend that sends no [DONE]
            self._complete()
        else:
            self._fail(_CUT)

    # -- chat events -> response events ---------------------------------------------------------
    def _event(self, event: Event) -> None:
        if event.data_bytes == b"[DONE]":
            self._complete()
            return
        data = event.data
        if not isinstance(data, dict):
            return
        if event.is_error or "error" in data:
            error = as_dict(data.get("error"))
            code, message = error.get("code"), error.get("message")
            self._fail({"code": code if isinstance(code, str) and code else "server_error",
                        "message": message if isinstance(message, str) and message
                        else "The backend failed."})
            return
        if isinstance(data.get("usage"), dict):
            self._usage = usage_of(data["usage"])
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice)

    def _choice(self, choice: dict) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                logprobs = choice.get("logprobs")
                tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
                self._text("output_text", content, tokens if isinstance(tokens, list) else [])
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text("refusal", refusal, [])
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def _text(self, kind: str, delta: str, logprobs: list) -> None:
        part = self._open_part(kind)
        if kind == "output_text":
            part["text"] += delta
            part["logprobs"].extend(logprobs)
            self._emit("response.output_text.delta", **self._where(), delta=delta,
                       logprobs=logprobs)
        else:
            part["refusal"] += delta
            self._emit("response.refusal.delta", **self._where(), delta=delta)

    def _tool_call(self, call: dict) -> None:
        index = call.get("index", 0)
        function = as_dict(call.get("function"))
        item = self._calls.get(index)
        if item is None:
            self._close()
            item = self._add(call_item(new_id("fc"), "in_progress",
                                       call.get("id") or new_id("call"),
                                       function.get("name") or "", ""))
            self._calls[index] = item
        elif function.get("name") and not item["name"]:
            item["name"] = function["name"]
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item["arguments"] += fragment
            if item is self._open:  # (a call streamed out of turn only lands in the item)
                self._emit("response.function_call_arguments.delta", item_id=item["id"],
                           output_index=self._output.index(item), delta=fragment)

    # -- items ------------------------------------------------------------------------------
    def _add(self, item: dict) -> dict:
        self._output.append(item)
        self._open = item
        # (Each event is serialised as it is written: what it shows is the item as it is now.)
        self._emit("response.output_item.added", output_index=len(self._output) - 1, item=item)
        return item

    def _open_part(self, kind: str) -> dict:
        """The message content part of `kind` being written: a new one (and a new message)
        when another is open."""
        item = self._open
        if item is None or item["type"] != "message":
            self._close()
            item = self._add(message_item(new_id("msg"), "in_progress", []))
        part = self._part
        if part is None or part["type"] != kind:
            self._close_part()
            part = text_part() if kind == "output_text" else refusal_part()
            item["content"].append(part)
            self._part = part
            self._emit("response.content_part.added", **self._where(), part=part)
        return part

    def _where(self) -> dict[str, Any]:
        item = self._open
        assert item is not None and self._part is not None
        return {"item_id": item["id"], "output_index": len(self._output) - 1,
                "content_index": len(item["content"]) - 1}  # (the part being written is last)

    def _close_part(self) -> None:
        part = self._part
        if part is None:
            return
        where = self._where()
        if part["type"] == "output_text":
            self._emit("response.output_text.done", **where, text=part["text"],
                       logprobs=part["logprobs"])
        else:
            self._emit("response.refusal.done", **where, refusal=part["refusal"])
        self._emit("response.content_part.done", **where, part=part)
        self._part = None

    def _close(self, status: str = "completed") -> None:
        item = self._open
        if item is None:
            return
        self._close_part()
        item["status"] = status
        index = self._output.index(item)
        if item["type"] == "function_call":
            self._emit("response.function_call_arguments.done", item_id=item["id"],
                       output_index=index, name=item["name"], arguments=item["arguments"])
        self._emit("response.output_item.done", output_index=index, item=item)
        self._open = None

    def _complete(self) -> None:
        status, incomplete = status_of(self._finish)
        if not self._output:  # nothing was said: an empty message, as a whole answer has
            self._open_part("output_text")
        self._close("incomplete" if status == "incomplete" else "completed")
        self.final = self.shape.response(status, self._output, self._usage,
                                         incomplete=incomplete)
        self._emit(f"response.{status}", response=self.final)

    def _fail(self, error: dict) -> None:
        self._close("incomplete")
        self._emit("error", code=error["code"], message=error["message"], param=None)
        self.final = self.shape.response("failed", self._output, self._usage, error=error)
        self._emit("response.failed", response=self.final)

    def _emit(self, kind: str, **fields: Any) -> None:
        data = orjson.dumps({"type": kind, **fields, "sequence_number": self._seq})
        self._seq += 1
        self._out.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")


async def blocks(chat: Relay, translator: Translator) -> AsyncIterator[bytes]:
    """The Responses stream the client reads: each chat block, relayed (its observers see it,
    the translator last), becomes what the translator wrote for it."""
    yield translator.take()  # created, in_progress: at once, before the model's first token
    try:
        async for _ in chat:
            out = translator.take()
            if out:
                yield out
    except Exception as exc:  # the chat relay closed itself ("error"); the response fails
        log.warning("a translated Responses stream failed: %r", exc)
    translator.stopped()
    out = translator.take()
    if out:
        yield out
