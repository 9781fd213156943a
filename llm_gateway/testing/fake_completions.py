"""Chat completions and legacy completions of the fake OpenAI upstream: bodies and SSE events.

Pure functions, no I/O; the text and token rules are in :mod:`llm_gateway.testing.fake_answer`.
"""

from __future__ import annotations

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


# --- chat completions -------------------------------------------------------------------------


def chat_answer(body: dict[str, Any]) -> Answer:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.", "messages")
    limit = _limit(body, "max_completion_tokens", "max_tokens")
    return _answer("chatcmpl-", body, _last_user_text(messages), _message_tokens(messages), limit)


def chat_completion(a: Answer) -> dict[str, Any]:
    message = {"role": "assistant", "content": a.text, "refusal": None}
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
