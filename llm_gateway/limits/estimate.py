"""What a call may use at most, reserved against token limits and budgets before it runs.

The prompt is estimated from its text (about 4 characters a token for English, OpenAI's own
rule of thumb) instead of tokenised: admission must stay cheap, and the reservation is
settled with the backend's real count afterwards anyway. The completion is what the client
allows (`max_tokens`, `max_completion_tokens`, `max_output_tokens`, times `n`), else
`limits.default_max_tokens`.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.call import Call

CHARS_PER_TOKEN = 4
_MAX_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Embeddings only read their input; passthrough calls (files, images, audio...) reserve no
# completion either: what they used, when their answer says, is settled afterwards.
_NO_COMPLETION = frozenset({"createEmbedding", "passthrough"})


def _text_chars(value: Any) -> int:
    """Characters of text in a prompt, whatever shape it has: a string, a list of strings or
    of token ids, chat messages, content parts, Responses API input items."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        if value and isinstance(value[0], int):
            return len(value) * CHARS_PER_TOKEN  # token ids: one token each
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        total = 0
        for key in ("content", "text", "input_text", "arguments", "output"):
            part = value.get(key)
            if part is not None:
                total += _text_chars(part)
        return total
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for key in ("messages", "prompt", "input", "instructions"):
        part = body.get(key)
        if part is not None:
            chars += _text_chars(part)
    return -(-chars // CHARS_PER_TOKEN)  # rounded up: never reserve less than the text


def completion_tokens(call: Call, default_max: int) -> int:
    if call.operation in _NO_COMPLETION:
        return 0
    body = call.body
    most = default_max
    for key in _MAX_FIELDS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            most = value
            break
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        most *= n
    return most


def estimate(call: Call, default_max: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens) to reserve for this call."""
    return prompt_tokens(call.body), completion_tokens(call, default_max)
