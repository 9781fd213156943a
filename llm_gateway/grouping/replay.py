"""Changing an answer's shape: SSE assembled into a whole answer (the other way: restream.py).

A non-streaming request may be answered by a shared stream or a cached one. The conversion
follows OpenAI's shapes for chat completions (``chat.completion.chunk`` -> ``chat.completion``)
and completions (``text_completion`` both ways). Fields the gateway does not know are carried
along, as the gateway does for everything it relays.
"""

from __future__ import annotations

from typing import Any

import orjson

_WHOLE_OBJECTS = {"chat.completion.chunk": "chat.completion", "text_completion": "text_completion"}
_OWN = ("choices", "usage", "object")


class Assembly:
    """Accumulates SSE chunks into the whole answer they spell (chat or text completion)."""

    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.error: dict[str, Any] | None = None  # an error event ended the stream
        self.done = False  # [DONE] was seen

    def feed(self, block: bytes) -> None:
        for line in block.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        if "error" in event and "choices" not in event:
            self.error = event
            return
        for key, value in event.items():
            if key not in _OWN and value is not None:
                self.top[key] = value
        self.top.setdefault("object", event.get("object"))
        if event.get("usage") is not None:
            self.usage = event["usage"]
        for piece in event.get("choices") or ():
            if isinstance(piece, dict):
                self._choice(piece)

    def _choice(self, piece: dict[str, Any]) -> None:
        index = piece.get("index", 0)
        choice = self.choices.setdefault(index, {"index": index})
        for key, value in piece.items():
            if key == "delta" and isinstance(value, dict):
                _merge_delta(choice.setdefault("message", {}), value)
            elif key == "text" and isinstance(value, str):
                choice["text"] = choice.get("text", "") + value
            elif key == "logprobs" and value is not None:
                choice["logprobs"] = _merge_logprobs(choice.get("logprobs"), value)
            elif key == "finish_reason":
                if value is not None or "finish_reason" not in choice:
                    choice["finish_reason"] = value
            elif key not in ("index", "logprobs"):
                choice[key] = value

    def body(self) -> bytes:
        """The whole answer. Call once the stream is over without an error."""
        answer = dict(self.top)
        answer["object"] = _WHOLE_OBJECTS.get(answer.get("object") or "", answer.get("object"))
        chat = answer["object"] == "chat.completion"
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            if chat:
                message = choice.setdefault("message", {})
                message.setdefault("role", "assistant")
                message.setdefault("content", None)
                message.setdefault("refusal", None)
                if "tool_calls" in message:
                    message["tool_calls"] = [message["tool_calls"][i]
                                             for i in sorted(message["tool_calls"])]
            choice.setdefault("logprobs", None)
            choice.setdefault("finish_reason", None)
            choices.append(choice)
        answer["choices"] = choices
        if self.usage is not None:
            answer["usage"] = self.usage
        return orjson.dumps(answer)


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            message.setdefault(key, None)
        elif key in ("content", "refusal", "reasoning_content") and isinstance(value, str):
            message[key] = (message.get(key) or "") + value
        elif key == "tool_calls" and isinstance(value, list):
            calls = message.setdefault("tool_calls", {})
            for part in value:
                if isinstance(part, dict):
                    _merge_tool_call(calls.setdefault(part.get("index", len(calls)), {}), part)
        else:
            message[key] = value


def _merge_tool_call(call: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if key == "index":
            continue
        if key == "function" and isinstance(value, dict):
            function = call.setdefault("function", {})
            for name, piece in value.items():
                if isinstance(piece, str) and isinstance(function.get(name), str):
                    function[name] += piece
                else:
                    function[name] = piece
        elif value is not None:
            call[key] = value


def _merge_logprobs(have: Any, more: Any) -> Any:
    """Chat logprobs hold lists under `content`/`refusal`; completion logprobs hold parallel
    lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`): lists concatenate."""
    if not isinstance(have, dict) or not isinstance(more, dict):
        return more
    merged = dict(have)
    for key, value in more.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        elif value is not None or key not in merged:
            merged[key] = value
    return merged
