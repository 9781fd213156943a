"""Anthropic's Messages stream -> OpenAI's `chat.completion.chunk` stream, event by event.

message_start gives the first chunk (the assistant role); each text_delta a content chunk and
each input_json_delta a tool call's arguments fragment (a tool_use block's start gives its id
and name, at the tool call's own index); message_delta the finish chunk; message_stop the
usage chunk (`choices: []`, when the body asked for it with stream_options.include_usage, as
the gateway always does: accounting cuts it out for clients that did not) and `[DONE]`. ping
and content_block_stop give nothing; an `error` event ends the stream with OpenAI's error
event (backends/sse.py). Events of types Anthropic may add later are skipped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from llm_gateway.backends.anthropic_answer import FINISH, error_body, openai_usage
from llm_gateway.backends.sse import DONE, error_event
from llm_gateway.stream.events import parse


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if type(index) is int else -1


class ChunkStream:
    """The OpenAI events for one Anthropic stream, fed its events in order."""

    def __init__(self, model: str, *, include_usage: bool, created: int | None = None) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time()) if created is None else created
        self.include_usage = include_usage
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index
        self.finished = False  # the finish chunk went out
        self.over = False  # [DONE] or an error went out: nothing more will

    def feed(self, event: Any) -> list[bytes]:
        """The OpenAI events that one Anthropic event (its decoded data) makes."""
        if not isinstance(event, dict) or self.over:
            return []
        kind = event.get("type")
        if kind == "content_block_delta":  # (the most frequent first)
            return self._delta(event)
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._stop()
        if kind == "error":
            return [self._error(event.get("error"))]
        return []  # ping, content_block_stop, and types added later

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _event({"id": self.id, "object": "chat.completion.chunk",
                       "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                    "finish_reason": finish}]})

    def _start(self, message: Any) -> list[bytes]:
        if isinstance(message, dict):
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._add_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return []
        if block.get("type") == "tool_use":
            index = self.tool_index[_index(event)] = len(self.tool_index)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        text = block.get("text")
        if block.get("type") == "text" and isinstance(text, str) and text:
            return [self._chunk({"content": text})]
        return []

    def _delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "input_json_delta":
            part = delta.get("partial_json")
            index = self.tool_index.get(_index(event))
            if index is None or not isinstance(part, str) or not part:
                return []
            return [self._chunk({"tool_calls": [{"index": index,
                                                 "function": {"arguments": part}}]})]
        return []  # thinking and signature deltas come only when asked for (refused)

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        self._add_usage(event.get("usage"))
        delta = event.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if reason is None:
            return []
        return [self._finish(FINISH.get(reason, "stop"))]

    def _finish(self, reason: str) -> bytes:
        self.finished = True
        return self._chunk({}, reason)

    def _stop(self) -> list[bytes]:
        out = [] if self.finished else [self._finish("stop")]
        usage = openai_usage(self.usage)
        if self.include_usage and usage is not None:
            out.append(_event({"id": self.id, "object": "chat.completion.chunk",
                               "created": self.created, "model": self.model, "choices": [],
                               "usage": usage}))
        out.append(DONE)
        self.over = True
        return out

    def _add_usage(self, usage: Any) -> None:
        # message_delta's counts are cumulative: each replaces the one before.
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})

    def _error(self, error: Any) -> bytes:
        self.over = True
        if not isinstance(error, dict):
            error = {"type": "api_error", "message": "the upstream stream failed"}
        _, body = error_body(error, 500)
        inner = body["error"]
        return error_event(inner["message"], type_=inner["type"], code=inner["code"])


async def translated(blocks: AsyncIterator[bytes], chunks: ChunkStream,
                     upstream: str) -> AsyncGenerator[bytes, None]:
    """Anthropic's SSE blocks -> OpenAI's, one block out for each block in that holds
    something; a stream that ends before message_stop ends with an error event."""
    async for block in blocks:
        out: list[bytes] = []
        for event in parse(block):
            out.extend(chunks.feed(event.data))
        if out:
            yield b"".join(out)
        if chunks.over:
            return
    yield error_event(f"upstream '{upstream}' ended the stream before its end",
                      code="upstream_unavailable")
