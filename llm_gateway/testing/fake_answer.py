"""What a text-generating request of the fake OpenAI upstream answers, before any wire format.

Text rule: the answer is ``"Echo: " + <input text>``, split on whitespace into words; a token
limit keeps only the first words (finish reason ``"length"``, else ``"stop"``).

Tool rule (chat): when ``tool_choice`` forces a call (names a function, or is ``"required"``:
the first tool), the answer is that call, its arguments ``{"text": <input text>}`` as JSON, in
pieces of 8 characters (one a chunk, each counting as one token), finish reason
``"tool_calls"``.

Token counting rule (the numbers in every ``usage``):

* completion / output tokens = number of words returned (times ``n`` for several choices);
* prompt / input tokens = whitespace-separated words over all message contents + 3 per
  message (chat and Responses API; Responses ``instructions`` count as one more message);
  for ``/v1/completions`` and ``/v1/embeddings``, just the words of the prompt / inputs
  (a token-id array counts its length).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from llm_gateway.testing.fake_wire import BadRequest

TOKENS_PER_MESSAGE = 3


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
    # A forced tool call (tool_choice names a function, or is "required"): the function's
    # name; `words` are then the pieces of its arguments, streamed one a chunk.
    tool: str | None = None

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
