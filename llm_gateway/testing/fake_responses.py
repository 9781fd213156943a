"""Bodies and stream events of the fake OpenAI upstream, built deterministically from the request.

Pure functions, no I/O: :mod:`llm_gateway.testing.fake_upstream` serves them.

Text rule: the answer is ``"Echo: " + <input text>``, split on whitespace into words; a token
limit keeps only the first words (finish reason ``"length"``, else ``"stop"``).

Token counting rule (the numbers in every ``usage``):

* completion / output tokens = number of words returned (times ``n`` for several choices);
* prompt / input tokens = whitespace-separated words over all message contents + 3 per
  message (chat and Responses API; Responses ``instructions`` count as one more message);
  for ``/v1/completions`` and ``/v1/embeddings``, just the words of the prompt / inputs
  (a token-id array counts its length).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "o3-mini",
    "text-embedding-3-small",
    "dall-e-3",
)
MODEL_CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_fake"
DEFAULT_DIMENSIONS = 8
TOKENS_PER_MESSAGE = 3

# Download pattern period: prime, so it never lines up with the 64 KiB piece size.
_PATTERN_PERIOD = 251
DOWNLOAD_PIECE = 64 * 1024
_PATTERN = bytes(range(_PATTERN_PERIOD)) * (DOWNLOAD_PIECE // _PATTERN_PERIOD + 2)


class BadRequest(Exception):
    """The request body is not something OpenAI would accept; answered as 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return orjson.dumps({"error": error})


def error_kind(status: int) -> tuple[str, str | None]:
    """OpenAI's error ``type`` and ``code`` for an HTTP status."""
    if status == 429:
        return "rate_limit_exceeded", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "permission_error", None
    return "invalid_request_error", None


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def sse_named(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# --- text and token helpers -------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or the concatenated ``text`` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def _message_tokens(messages: list[Any]) -> int:
    return sum(
        count_words(content_text(m.get("content"))) + TOKENS_PER_MESSAGE
        for m in messages
        if isinstance(m, dict)
    )


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _limit(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadRequest(f"Invalid '{name}': expected a non-negative integer.", name)
        return value
    return None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    return model


def _n(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
        raise BadRequest("Invalid 'n': expected an integer between 1 and 128.", "n")
    return n


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


@dataclass(frozen=True)
class Answer:
    """What one text-generating request answers, shared by its plain and streamed forms."""

    id: str
    created: int
    model: str
    words: list[str]
    finish_reason: str
    n: int
    prompt_tokens: int
    include_usage: bool

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def pieces(self) -> list[str]:
        # Each word keeps its separating space so the pieces concatenate to exactly ``text``.
        last = len(self.words) - 1
        return [w if i == last else w + " " for i, w in enumerate(self.words)]

    def usage(self) -> dict[str, Any]:
        completion = len(self.words) * self.n
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


def _answer(
    prefix: str,
    body: dict[str, Any],
    text: str,
    prompt_tokens: int,
    limit: int | None,
) -> Answer:
    words = ("Echo: " + text).split()
    finish = "stop"
    if limit is not None and limit < len(words):
        words, finish = words[:limit], "length"
    return Answer(
        id=prefix + uuid.uuid4().hex[:24],
        created=int(time.time()),
        model=_model(body),
        words=words,
        finish_reason=finish,
        n=_n(body),
        prompt_tokens=prompt_tokens,
        include_usage=_include_usage(body),
    )


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

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        obj: dict[str, Any] = {
            "id": a.id,
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
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
        events.append(
            sse(
                {
                    "id": a.id,
                    "object": "chat.completion.chunk",
                    "created": a.created,
                    "model": a.model,
                    "service_tier": "default",
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [],
                    "usage": a.usage(),
                }
            )
        )
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
    def chunk(index: int, text: str, finish: str | None) -> bytes:
        obj: dict[str, Any] = {
            "id": a.id,
            "object": "text_completion",
            "created": a.created,
            "model": a.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }
        if a.include_usage:
            obj["usage"] = None
        return sse(obj)

    events = [chunk(i, piece, None) for piece in a.pieces() for i in range(a.n)]
    before_finish = len(events)
    events.extend(chunk(i, "", a.finish_reason) for i in range(a.n))
    if a.include_usage:
        events.append(
            sse(
                {
                    "id": a.id,
                    "object": "text_completion",
                    "created": a.created,
                    "model": a.model,
                    "system_fingerprint": SYSTEM_FINGERPRINT,
                    "choices": [],
                    "usage": a.usage(),
                }
            )
        )
    events.append(SSE_DONE)
    return events, before_finish


# --- embeddings -------------------------------------------------------------------------------


def embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """Deterministic vector in [-1, 1] from a hash of ``key``; values are exact float32."""
    raw = b""
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(key + block.to_bytes(4, "little")).digest()
        block += 1
    ints = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    floats = [i / 0xFFFFFFFF * 2.0 - 1.0 for i in ints]
    # Round through float32 so the float and base64 encodings carry the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *floats)))


def _embedding_inputs(value: Any) -> list[tuple[bytes, int]]:
    """(hash key, token count) per input; a flat int list is one token-id input, as in OpenAI."""
    if isinstance(value, str):
        return [(value.encode(), count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [(orjson.dumps(value), len(value))]
        out: list[tuple[bytes, int]] = []
        for item in value:
            if isinstance(item, str):
                out.append((item.encode(), count_words(item)))
            elif isinstance(item, list) and all(isinstance(v, int) for v in item):
                out.append((orjson.dumps(item), len(item)))
            else:
                raise BadRequest("Invalid 'input': expected strings or token arrays.", "input")
        return out
    raise BadRequest("Missing required parameter: 'input'.", "input")


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = _model(body)
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise BadRequest("Invalid 'dimensions': expected a positive integer.", "dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, (key, count) in enumerate(_embedding_inputs(body.get("input"))):
        tokens += count
        vector = embedding_vector(key, dimensions)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- models -----------------------------------------------------------------------------------


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}


def model_list(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


# --- Responses API ----------------------------------------------------------------------------


def _response_messages(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        messages: list[Any] = [{"role": "user", "content": value}]
    elif isinstance(value, list):
        # Items without a role (tool outputs, reasoning) carry no prompt words here.
        messages = [item for item in value if isinstance(item, dict) and "role" in item]
    else:
        raise BadRequest("Missing required parameter: 'input'.", "input")
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages = [{"role": "developer", "content": instructions}, *messages]
    return messages


def response_answer(body: dict[str, Any]) -> Answer:
    messages = _response_messages(body)
    limit = _limit(body, "max_output_tokens")
    return _answer("resp_", body, _last_user_text(messages), _message_tokens(messages), limit)


def response_object(a: Answer, body: dict[str, Any], *, done: bool = True) -> dict[str, Any]:
    """The ``response`` resource; ``done=False`` gives its in-progress form (no output yet)."""
    complete = a.finish_reason == "stop"
    status = ("completed" if complete else "incomplete") if done else "in_progress"
    output = (
        [
            {
                "type": "message",
                "id": "msg_" + a.id.removeprefix("resp_"),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": a.text, "annotations": []}],
            }
        ]
        if done
        else []
    )
    usage = (
        {
            "input_tokens": a.prompt_tokens,
            "output_tokens": len(a.words),
            "total_tokens": a.prompt_tokens + len(a.words),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        if done
        else None
    )
    return {
        "id": a.id,
        "object": "response",
        "created_at": a.created,
        "status": status,
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if done and not complete else None),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": a.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def response_stream(
    a: Answer,
    final: dict[str, Any],
    body: dict[str, Any],
) -> tuple[list[bytes], int]:
    """Named SSE events of a streamed response, and how many come before the text is done."""
    item = final["output"][0]
    item_id = item["id"]
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_object(a, body, done=False)},
        {"type": "response.in_progress", "response": response_object(a, body, done=False)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where,
         "part": {"type": "output_text", "text": "", "annotations": []}},
    ]
    for piece in a.pieces():
        events.append({"type": "response.output_text.delta", **where, "delta": piece,
                       "logprobs": []})
    before_done = len(events)
    events += [
        {"type": "response.output_text.done", **where, "text": a.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": item["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    ]
    terminal = "response.completed" if final["status"] == "completed" else "response.incomplete"
    events.append({"type": terminal, "response": final})
    for seq, event in enumerate(events):
        event["sequence_number"] = seq
    return [sse_named(e) for e in events], before_done


def response_deleted(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response.deleted", "deleted": True}


# --- passthrough downloads --------------------------------------------------------------------


def download_piece(offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset+length`` of the deterministic download (byte k is k % 251)."""
    start = offset % _PATTERN_PERIOD
    return _PATTERN[start : start + length]


def download_bytes(size: int) -> bytes:
    """The whole body ``GET /v1/<any>?size=N`` answers, for tests to compare against."""
    return b"".join(
        download_piece(o, min(DOWNLOAD_PIECE, size - o)) for o in range(0, size, DOWNLOAD_PIECE)
    )
