"""The request span and each attempt's span watch their answer go by (stream/observer.py):
response model and id, finish reasons, how it ended, and the completion when
`tracing.record_content` is true. Added only to traced answers: nothing is parsed otherwise."""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.tracing.base import Span
from llm_gateway.tracing.genai import CONTENT_LIMIT, response_fields

# A bigger answer (embeddings for many inputs, say) is not decoded for its span: parsing it
# would cost milliseconds. Its model and id are read off its ends instead (OpenAI's answers
# name them first or last), its finish reasons off its tail. (A smaller one is decoded:
# orjson is then quicker than the byte searches.)
PARSE_LIMIT = 256 * 1024
_ENDS = 4096
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_FIRST_ID = re.compile(rb'\{\s*"id"\s*:\s*"([^"\\]{1,256})"')
# A chunk that ends a choice: `"finish_reason":"stop"` (JSON text in content is escaped, so
# these bytes are always the key; null, on every other chunk, does not match), looked for
# near a block's end.
_FINISH_KEYS = (b'"finish_reason":"', b'"finish_reason": "')
_FINISH_ENDS = 2048
MAX_REASONS = 128


def _ends_fields(body: bytes) -> dict[str, Any]:
    """The id (when it is the first key, as OpenAI writes it) and the top level's model (a
    nested object has none in OpenAI's answers), read off the body's ends."""
    out: dict[str, Any] = {}
    first_id = _FIRST_ID.match(body)
    if first_id is not None:
        out["gen_ai.response.id"] = first_id.group(1).decode("utf-8", "replace")
    model = _MODEL.search(body, 0, _ENDS) or _MODEL.search(body, max(0, len(body) - _ENDS))
    if model is not None:
        out["gen_ai.response.model"] = model.group(1).decode("utf-8", "replace")
    return out


class AnswerWatch(Observer):
    """The request span's view of the answer the client gets."""

    stage = Stage.LOG
    __slots__ = ("content", "head", "parts", "reasons", "size", "span")

    def __init__(self, span: Span, content: bool) -> None:
        self.span = span
        self.content = content  # keep the completion's text
        self.head = False  # the stream's first chunk was read
        self.parts: list[str] = []
        self.size = 0
        self.reasons: list[str] = []  # a stream's finish reasons, one per choice

    def whole(self, status: int, body: bytes) -> None:
        if status >= 400:
            return  # the edge records the status; the body is an error, not an answer
        if len(body) > PARSE_LIMIT and not self.content:
            span = self.span
            span.set_all(_ends_fields(body))
            self._finish_reasons(body, len(body) - _ENDS)
            if self.reasons:
                span.set("gen_ai.response.finish_reasons", self.reasons)
            return
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
        if not self.content:
            # No event of the stream is decoded but its first; finish reasons are found by
            # byte search near each block's end, where a chunk ending a choice lies.
            self._finish_reasons(block.raw, len(block.raw) - _FINISH_ENDS)
            if self.head:
                return
            # A fast upstream's whole answer can come as one block: its first event alone
            # is cut out and decoded, not all of them.
            first = block.first_event
            if first is not None and type(first.data) is dict:
                self.head = True
                self.span.set_all(response_fields(first.data))
                return
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
                    if isinstance(choice.get("finish_reason"), str):
                        self.reasons.append(choice["finish_reason"])

    def _finish_reasons(self, raw: bytes, start: int) -> None:
        start = max(0, start)
        for key in _FINISH_KEYS:  # compact JSON (most servers), else with a space
            at = raw.find(key, start)
            if at < 0:
                continue
            while at >= 0 and len(self.reasons) < MAX_REASONS:
                end = raw.find(b'"', at + len(key))
                if 0 <= end - at - len(key) <= 64:
                    self.reasons.append(raw[at + len(key):end].decode("utf-8", "replace"))
                at = raw.find(key, at + 1)
            return

    def ended(self, end: End) -> None:
        span = self.span
        span.set("llm_gateway.outcome", end.outcome)
        if end.in_error:
            last = end.last
            span.fail("stream_error", (last.error_code() or "") if last is not None else "")
        if self.reasons:
            span.set("gen_ai.response.finish_reasons", self.reasons)
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
