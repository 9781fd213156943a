"""Anthropic's answers in OpenAI's shapes: a Message -> a `chat.completion`, its usage, its
stop reason, and its errors -> `{"error": {...}}` with OpenAI's statuses (docs/providers.md).

The completion keeps Anthropic's message id (`msg_...`): the id the client sees is the one
Anthropic's logs and support know.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from llm_gateway.echo import clip

# stop_reason -> finish_reason. pause_turn (a server tool paused the turn) ends the answer
# as far as a chat completion can tell; refusal is Anthropic's safety stop.
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter"}
# Anthropic error type -> (our status, OpenAI error type, OpenAI code). 529 overloaded_error
# becomes 503: the status OpenAI clients know for "try again later", and a 5xx to routing.
ERRORS: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "invalid_request_error", "invalid_api_key"),
    "permission_error": (403, "invalid_request_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    "api_error": (500, "server_error", None),
    "overloaded_error": (503, "server_error", "overloaded"),
}
# What Anthropic says when the prompt does not fit the model's context window ("prompt is too
# long: 210000 tokens > 200000 maximum"; "input length and `max_tokens` exceed context
# limit: ..."): OpenAI's code for it, which routing's context-window fallbacks look for.
_TOO_LONG = re.compile(r"prompt is too long|exceed(?:s)? (?:the )?context (?:limit|window)",
                       re.IGNORECASE)


def openai_usage(usage: Any) -> dict[str, Any] | None:
    """Anthropic's usage -> OpenAI's: the prompt counts every input token, cache writes and
    reads included (Anthropic reports those apart from input_tokens); cache reads are also
    the prompt's cached_tokens, which the ledger records."""
    if not isinstance(usage, dict):
        return None
    fresh, written, read, output = (_count(usage, key) for key in (
        "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
        "output_tokens"))
    prompt = fresh + written + read
    return {"prompt_tokens": prompt, "completion_tokens": output,
            "total_tokens": prompt + output, "prompt_tokens_details": {"cached_tokens": read}}


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if type(value) is int and value > 0 else 0


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    """A tool_use block -> an OpenAI tool call (arguments as a JSON string)."""
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": block.get("id"), "type": "function",
            "function": {"name": block.get("name"), "arguments": arguments}}


def chat_completion(message: dict[str, Any], model: str,
                    created: int | None = None) -> dict[str, Any]:
    """A Message object -> a chat.completion; `model` stands in if it names none."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block))
        # other blocks (thinking, server tools' results) are only sent when asked for with
        # fields we refuse, so none are expected here
    reply: dict[str, Any] = {"role": "assistant",
                             "content": "".join(texts) if texts or not calls else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    answer: dict[str, Any] = {
        "id": message.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model") or model,
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": FINISH.get(message.get("stop_reason") or "", "stop")}],
    }
    usage = openai_usage(message.get("usage"))
    if usage is not None:
        answer["usage"] = usage
    return answer


def openai_error(status: int, body: bytes, upstream: str) -> tuple[int, dict[str, Any]]:
    """An Anthropic error answer -> (status, OpenAI error body)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        # Not Anthropic's shape (a proxy's page): say who answered what, not the page itself.
        message = f"upstream '{upstream}' answered {status}"
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return _mapped_status(status), _body(message, kind, None, None)
    return error_body(error, status)


def error_body(error: dict[str, Any], status: int) -> tuple[int, dict[str, Any]]:
    """Anthropic's `error` object (of an answer or of a stream's error event) -> (status,
    OpenAI error body); `status` is the upstream's, used when the error type is unknown."""
    kind = error.get("type")
    message = error.get("message")
    text = message if isinstance(message, str) else clip(orjson.dumps(error).decode())
    mapped = ERRORS.get(kind) if isinstance(kind, str) else None
    if mapped is None:
        fallback = "server_error" if status >= 500 else "invalid_request_error"
        return _mapped_status(status), _body(text, fallback, None, None)
    new_status, new_type, code = mapped
    param = None
    if kind == "invalid_request_error" and _TOO_LONG.search(text):
        code, param = "context_length_exceeded", "messages"
    return new_status, _body(text, new_type, param, code)


def _mapped_status(status: int) -> int:
    return 503 if status == 529 else status


def _body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
