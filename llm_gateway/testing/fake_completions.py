"""Chat completions and legacy completions of the fake OpenAI upstream: bodies and SSE events.

Pure functions, no I/O; the text and token rules are in :mod:`llm_gateway.testing.fake_answer`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from llm_gateway.testing.fake_answer import (
    Answer,
    _answer,
    _last_user_text,
    _limit,
    _message_tokens,
    count_words,
)
from llm_gateway.testing.fake_wire import SSE_DONE, BadRequest, sse

SYSTEM_FINGERPRINT = "fp_fake"
TOOL_PIECE = 8  # characters of a forced call's arguments per chunk


# --- chat completions -------------------------------------------------------------------------


def chat_answer(body: dict[str, Any]) -> Answer:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.", "messages")
    limit = _limit(body, "max_completion_tokens", "max_tokens")
    text = _last_user_text(messages)
    answer = _answer("chatcmpl-", body, text, _message_tokens(messages), limit)
    tool = _forced_tool(body)
    if tool is None:
        return answer
    arguments = json.dumps({"text": text})
    pieces = [arguments[i:i + TOOL_PIECE] for i in range(0, len(arguments), TOOL_PIECE)]
    return replace(answer, words=pieces, finish_reason="tool_calls", tool=tool)


def _forced_tool(body: dict[str, Any]) -> str | None:
    """The function a request forces a call to (see fake_answer's tool rule), or None."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    if choice == "required" and isinstance(tools[0], dict):
        return (tools[0].get("function") or {}).get("name")
    return None


def _tool_calls(a: Answer, arguments: str, call_id: str) -> list[dict[str, Any]]:
    return [{"index": 0, "id": call_id, "type": "function",
             "function": {"name": a.tool, "arguments": arguments}}]


def chat_completion(a: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text, "refusal": None}
    if a.tool is not None:
        calls = _tool_calls(a, "".join(a.words), "call_" + a.id[-24:])
        message = {"role": "assistant", "content": None, "refusal": None,
                   "tool_calls": [{k: v for k, v in c.items() if k != "index"} for c in calls]}
    return {
        "id": a.id,
        "object": "chat.completion",
        "created": a.created,
        "model": a.model,
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": a.finish_reason}
            for i in range(a.n)
        ],
        "usage": a.usage(),
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
        # Unknown to the SDK: tests check that a transparent gateway keeps it.
        "x_fake_extra": {"kept": True},
    }


def chat_stream(a: Answer) -> tuple[list[bytes], int]:
    """SSE events of a streamed chat completion, and how many come before the finish chunk."""

    # Every chunk, the usage one included, starts with these fields.
    head: dict[str, Any] = {
        "id": a.id,
        "object": "chat.completion.chunk",
        "created": a.created,
        "model": a.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        obj: dict[str, Any] = {
            **head,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if a.include_usage:
            obj["usage"] = None
        return sse(obj)

    if a.tool is not None:  # OpenAI's shape: the call's id and name first, then arguments
        events = [chunk(i, {"role": "assistant", "content": None, "tool_calls": _tool_calls(
            a, "", "call_" + a.id[-24:])}, None) for i in range(a.n)]
        for piece in a.words:
            events.extend(chunk(i, {"tool_calls": [{"index": 0, "function": {
                "arguments": piece}}]}, None) for i in range(a.n))
    else:
        events = [chunk(i, {"role": "assistant", "content": ""}, None) for i in range(a.n)]
        for piece in a.pieces():
            events.extend(chunk(i, {"content": piece}, None) for i in range(a.n))
    before_finish = len(events)
    events.extend(chunk(i, {}, a.finish_reason) for i in range(a.n))
    if a.include_usage:
        events.append(sse({**head, "choices": [], "usage": a.usage()}))
    events.append(SSE_DONE)
    return events, before_finish


# --- legacy completions -----------------------------------------------------------------------


def completion_answer(body: dict[str, Any]) -> Answer:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in prompt if isinstance(p, str)), "")
    if not isinstance(prompt, str):
        prompt = ""
    limit = _limit(body, "max_tokens")
    return _answer("cmpl-", body, prompt, count_words(prompt), limit)


def completion(a: Answer) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "text_completion",
        "created": a.created,
        "model": a.model,
        "choices": [
            {"text": a.text, "index": i, "logprobs": None, "finish_reason": a.finish_reason}
            for i in range(a.n)
        ],
        "usage": a.usage(),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def completion_stream(a: Answer) -> tuple[list[bytes], int]:
    # Every chunk, the usage one included, starts with these fields.
    head: dict[str, Any] = {
        "id": a.id,
        "object": "text_completion",
        "created": a.created,
        "model": a.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }

    def chunk(index: int, text: str, finish: str | None) -> bytes:
        obj: dict[str, Any] = {
            **head,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }
        if a.include_usage:
            obj["usage"] = None
        return sse(obj)

    events = [chunk(i, piece, None) for piece in a.pieces() for i in range(a.n)]
    before_finish = len(events)
    events.extend(chunk(i, "", a.finish_reason) for i in range(a.n))
    if a.include_usage:
        events.append(sse({**head, "choices": [], "usage": a.usage()}))
    events.append(SSE_DONE)
    return events, before_finish
