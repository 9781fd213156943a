"""What the fake Anthropic upstream answers: request checks as Anthropic makes them, the
Message it answers with, and that Message as the Messages API's stream of events.

Pure functions, no I/O. The answer is a deterministic echo, so tests can predict it:

* the last user turn holds tool results -> text ``"Tool results: <their text>"``;
* tools are offered and ``tool_choice`` is ``any`` / ``tool``, or the last user text names
  tools (unless ``tool_choice`` is ``none``) -> a ``tool_use`` block for each tool named (the
  first only when parallel use is disabled; ``any``: the first tool), input
  ``{"query": <the user text>}``;
* else text ``"Echo: <the last user text>"`` (plus `` [N images]`` when it held images).

Tokens are whitespace-separated words: text is streamed one word per ``text_delta``,
``max_tokens`` cuts it after that many words (stop_reason ``max_tokens``), a stop sequence
cuts it before the sequence (``stop_sequence``). input_tokens counts the words of the system
prompt and every text block.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from llm_gateway.testing.fake_wire import sse_named

# Top-level fields the Messages API knows; any other is refused as Anthropic does.
KNOWN_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
})
_BLOCK_TYPES = frozenset({"text", "image", "tool_use", "tool_result", "document"})
_WORD = re.compile(r"\S+\s*")


class AnthropicError(Exception):
    """An answer in Anthropic's error shape."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message

    def body(self) -> bytes:
        return orjson.dumps({"type": "error",
                             "error": {"type": self.type, "message": self.message}})


def _bad(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def check(body: Any, context_window: int) -> None:
    """Refuse what Anthropic refuses (the part of its checks the gateway could get wrong)."""
    if not isinstance(body, dict):
        raise _bad("Request body must be a JSON object")
    for key in body:
        if key not in KNOWN_FIELDS:
            raise _bad(f"{key}: Extra inputs are not permitted")
    if "max_tokens" not in body:
        raise _bad("max_tokens: Field required")
    if type(body["max_tokens"]) is not int or body["max_tokens"] < 1:
        raise _bad("max_tokens: Input should be a valid integer greater than 0")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise _bad("temperature: Input should be less than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required")
    previous_uses: set[str] = set()
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(turn.get("content"), f"messages.{i}.content")
        for j, block in enumerate(blocks):
            if block["type"] == "tool_result" and block.get("tool_use_id") not in previous_uses:
                raise _bad(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                           "`tool_result` blocks. Each `tool_result` block must have a "
                           "corresponding `tool_use` block in the previous message.")
        previous_uses = {b["id"] for b in blocks if b["type"] == "tool_use"}
    prompt = input_tokens(body)
    if prompt > context_window:
        raise _bad(f"prompt is too long: {prompt} tokens > {context_window} maximum")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _bad(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}: Input should be a valid list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            raise _bad(f"{where}.{j}.type: unknown content block type")
        if block["type"] == "text" and not block.get("text"):
            raise _bad(f"{where}.{j}: text content blocks must be non-empty")
    return content


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    found = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "text":
            found.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            found.extend(_texts(block.get("content")))
    return found


def input_tokens(body: dict[str, Any]) -> int:
    words = sum(len(t.split()) for t in _texts(body.get("system")))
    for turn in body.get("messages") or ():
        words += sum(len(t.split()) for t in _texts(turn.get("content")))
    return words


def message(body: dict[str, Any], scripted: tuple[list[dict[str, Any]], str] | None = None,
            cache: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The Message answering `body` (or the scripted content and stop reason)."""
    if scripted is not None:
        content, stop_reason, stop_sequence = scripted[0], scripted[1], None
    else:
        content, stop_reason, stop_sequence = _answer(body)
    output = 0
    for block in content:
        output += len(block["text"].split()) if block["type"] == "text" else \
            max(1, len(orjson.dumps(block.get("input")).split()))
    created, read = cache
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "model": body.get("model"), "content": content, "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": input_tokens(body), "output_tokens": output,
                  "cache_creation_input_tokens": created, "cache_read_input_tokens": read},
    }


def _answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    last = body["messages"][-1]
    content = last.get("content")
    blocks = content if isinstance(content, list) else []
    results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    if last.get("role") == "user" and results:
        return _text(body, "Tool results: " + " | ".join(
            " ".join(_texts(r.get("content"))) for r in results))
    said = " ".join(_texts(content)) if last.get("role") == "user" else ""
    calls = _tool_calls(body, said)
    if calls:
        return calls, "tool_use", None
    images = sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "image")
    return _text(body, f"Echo: {said}" + (f" [{images} images]" if images else ""))


def _tool_calls(body: dict[str, Any], said: str) -> list[dict[str, Any]]:
    tools = [t["name"] for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return []
    if choice.get("type") == "tool":
        names = [choice.get("name")]
    elif choice.get("type") == "any":
        names = [next((t for t in tools if t in said), tools[0])]
    else:
        names = [t for t in tools if re.search(rf"\b{re.escape(t)}\b", said)]
    if choice.get("disable_parallel_tool_use"):
        names = names[:1]
    return [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name,
             "input": {"query": said}} for name in names]


def _text(body: dict[str, Any], text: str) -> tuple[list[dict[str, Any]], str, str | None]:
    stop_reason, stop_sequence = "end_turn", None
    cut = len(text)
    for sequence in body.get("stop_sequences") or ():
        at = text.find(sequence)
        if 0 <= at < cut:
            cut, stop_sequence = at, sequence
    if stop_sequence is not None:
        text, stop_reason = text[:cut], "stop_sequence"
    words = _WORD.findall(text)
    if len(words) > body["max_tokens"]:
        text, stop_reason, stop_sequence = "".join(words[:body["max_tokens"]]), "max_tokens", None
    return [{"type": "text", "text": text}], stop_reason, stop_sequence


def events(answer: dict[str, Any]) -> list[bytes]:
    """`answer` as the Messages API streams it, event by event (SSE, with `event:` names)."""
    usage = answer["usage"]
    start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    out = [sse_named({"type": "message_start", "message": start})]
    for i, block in enumerate(answer["content"]):
        if block["type"] == "text":
            out.append(sse_named({"type": "content_block_start", "index": i,
                                  "content_block": {"type": "text", "text": ""}}))
            pieces = [{"type": "text_delta", "text": w} for w in _WORD.findall(block["text"])]
        else:
            out.append(sse_named({"type": "content_block_start", "index": i, "content_block": {
                **block, "input": {}}}))
            arguments = orjson.dumps(block["input"]).decode()
            third = max(1, len(arguments) // 3)
            # Anthropic's first fragment is often empty.
            pieces = [{"type": "input_json_delta", "partial_json": part} for part in
                      ["", *(arguments[k:k + third] for k in range(0, len(arguments), third))]]
        if i == 0:
            out.append(sse_named({"type": "ping"}))
        out.extend(sse_named({"type": "content_block_delta", "index": i, "delta": piece})
                   for piece in pieces)
        out.append(sse_named({"type": "content_block_stop", "index": i}))
    out.append(sse_named({"type": "message_delta", "delta": {
        "stop_reason": answer["stop_reason"], "stop_sequence": answer["stop_sequence"]},
        "usage": {"output_tokens": usage["output_tokens"]}}))
    out.append(sse_named({"type": "message_stop"}))
    return out


def error_event(type_: str, message: str) -> bytes:
    return sse_named({"type": "error", "error": {"type": type_, "message": message}})
