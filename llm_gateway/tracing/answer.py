"""The request span and each attempt's span watch their answer go by (stream/observer.py):
response model and id, finish reasons, how it ended, and the completion when
`tracing.record_content` is true. Added only to traced answers: nothing is parsed otherwise."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.tracing.base import Span
from llm_gateway.tracing.genai import CONTENT_LIMIT, response_fields


class AnswerWatch(Observer):
    """The request span's view of the answer the client gets."""

    stage = Stage.LOG
    __slots__ = ("content", "head", "parts", "size", "span")

    def __init__(self, span: Span, content: bool) -> None:
        self.span = span
        self.content = content  # keep the completion's text
        self.head = False  # the stream's first chunk was read
        self.parts: list[str] = []
        self.size = 0

    def whole(self, status: int, body: bytes) -> None:
        if status >= 400:
            return  # the edge records the status; the body is an error, not an answer
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        self.span.set_all(response_fields(data))
        choices = data.get("choices") if type(data) is dict else None
        if type(choices) is not list:
            return
        reasons = [c["finish_reason"] for c in choices
                   if type(c) is dict and isinstance(c.get("finish_reason"), str)]
        if reasons:
            self.span.set("gen_ai.response.finish_reasons", reasons)
        if self.content:
            for choice in choices:
                self._keep(_text(choice.get("message") if type(choice) is dict else None)
                           or (choice.get("text") if type(choice) is dict else None))

    def block(self, block: Block) -> None:
        if self.head and not self.content:
            return  # all it wanted was the first chunk: no event of the rest is parsed here
        for event in block.events:
            data = event.data
            if type(data) is not dict:
                continue
            if not self.head:
                self.head = True
                self.span.set_all(response_fields(data))
            if not self.content:
                return
            for choice in data.get("choices") or ():
                if type(choice) is dict:
                    self._keep(_text(choice.get("delta")) or choice.get("text"))

    def ended(self, end: End) -> None:
        span = self.span
        span.set("llm_gateway.outcome", end.outcome)
        if end.in_error:
            last = end.last
            span.fail("stream_error", (last.error_code() or "") if last is not None else "")
        if self.parts:
            span.event("gen_ai.content.completion", {"gen_ai.completion": "".join(self.parts)})

    def _keep(self, text: Any) -> None:
        if isinstance(text, str) and text and self.size < CONTENT_LIMIT:
            self.parts.append(text[:CONTENT_LIMIT - self.size])
            self.size += len(text)


def _text(message: Any) -> str | None:
    if type(message) is dict and isinstance(message.get("content"), str):
        return message["content"]
    return None


class EndSpan(Observer):
    """Ends a backend attempt's span when its answer is over (a stream: its last block)."""

    stage = Stage.SOURCE
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def ended(self, end: End) -> None:
        if end.outcome not in ("ok", "client_gone"):
            self.span.fail(end.outcome)
        self.span.set("llm_gateway.outcome", end.outcome)
        self.span.end()
