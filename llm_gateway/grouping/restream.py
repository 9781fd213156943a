"""Replays that look live: a whole answer told as a stream, and an id of its own per client.

A cached or shared answer handed to a streaming client reads like a live stream in OpenAI's
shape: the text in several content chunks, then a finish chunk without text, then the usage
chunk, then ``[DONE]``. Clients rely on it: chatbot-ui drops the content of the chunk that
carries ``finish_reason``, and some wait for more than one chunk. Each streamed replay also
gets an id of its own (``chatcmpl-...``/``cmpl-...``), as every OpenAI request does: clients
and their logs tell answers apart by it. (Whole-body replays keep the answer's id.)

The usage chunk is written whenever the answer has usage: the accountant strips it for a
client that did not ask for it (``stream_options.include_usage``), as for a backend's stream.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from llm_gateway.backends.sse import DONE

_CHUNK_OBJECTS = {"chat.completion": "chat.completion.chunk", "text_completion": "text_completion"}
_OWN = ("choices", "usage", "object")
_CHAT_CHOICE = ("index", "message", "logprobs", "finish_reason")
_TEXT_CHOICE = ("index", "text", "logprobs", "finish_reason")
# A word with the spaces before it, or trailing spaces: the pieces always join back exactly.
_WORD = re.compile(r"\s*\S+|\s+")
# A long answer is cut into at most this many content chunks (several words each): a chunk
# repeats the answer's top-level fields, so one per word would multiply a big answer's size.
MAX_PIECES = 256


def pieces_of(text: str) -> list[str]:
    """``text`` cut between words into at most MAX_PIECES pieces (one piece for no words)."""
    words = _WORD.findall(text)
    if len(words) <= 1:
        return [text]
    if len(words) <= MAX_PIECES:
        return words
    per = -(-len(words) // MAX_PIECES)
    return ["".join(words[i:i + per]) for i in range(0, len(words), per)]


def fresh_id(old: str, chat: bool) -> str:
    """A new answer id in the style of ``old`` (its prefix kept, e.g. ``chatcmpl-``)."""
    head, dash, _ = old.partition("-")
    prefix = head + "-" if dash and head else ("chatcmpl-" if chat else "cmpl-")
    return prefix + uuid.uuid4().hex


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def sse_from_body(body: bytes, *, fresh: bool = True) -> bytes | None:
    """A whole chat/text completion as one block of SSE events; None for other answers.
    With ``fresh``, the events carry a new id rather than the answer's."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict) or answer.get("object") not in _CHUNK_OBJECTS:
        return None
    chat = answer["object"] == "chat.completion"
    base = {k: v for k, v in answer.items() if k not in _OWN}
    base["object"] = _CHUNK_OBJECTS[answer["object"]]
    if fresh and isinstance(base.get("id"), str):
        base["id"] = fresh_id(base["id"], chat)
    events: list[bytes] = []
    for choice in answer.get("choices") or []:
        if isinstance(choice, dict):
            pieces = _chat_pieces(choice) if chat else _text_pieces(choice)
            events.extend(_event({**base, "choices": [piece]}) for piece in pieces)
    if answer.get("usage") is not None:
        events.append(_event({**base, "choices": [], "usage": answer["usage"]}))
    events.append(DONE)
    return b"".join(events)


def _texts(text: Any, logprobs: Any) -> list[Any]:
    # With logprobs the text stays in one chunk beside them: its tokens' logprobs follow it.
    return pieces_of(text) if isinstance(text, str) and logprobs is None else [text]


def _chat_pieces(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """Choice deltas: the message (its content's first piece), the rest, then the finish."""
    index, logprobs = choice.get("index", 0), choice.get("logprobs")
    first = dict(choice.get("message") or {})
    tools = first.get("tool_calls")
    if isinstance(tools, list):
        first["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tools)]
    texts = _texts(first.get("content"), logprobs)
    if "content" in first:
        first["content"] = texts[0]
    extra = {k: v for k, v in choice.items() if k not in _CHAT_CHOICE}
    pieces = [{"index": index, "delta": first, "logprobs": logprobs, "finish_reason": None,
               **extra}]
    pieces.extend({"index": index, "delta": {"content": text}, "logprobs": None,
                   "finish_reason": None} for text in texts[1:])
    pieces.append({"index": index, "delta": {}, "logprobs": None,
                   "finish_reason": choice.get("finish_reason")})
    return pieces


def _text_pieces(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """Completion choices: the text in pieces, then the finish with empty text (as OpenAI)."""
    index, logprobs = choice.get("index", 0), choice.get("logprobs")
    extra = {k: v for k, v in choice.items() if k not in _TEXT_CHOICE}
    texts = _texts(choice.get("text"), logprobs)
    pieces = [{"text": texts[0], "index": index, "logprobs": logprobs, "finish_reason": None,
               **extra}]
    pieces.extend({"text": text, "index": index, "logprobs": None, "finish_reason": None}
                  for text in texts[1:])
    pieces.append({"text": "", "index": index, "logprobs": None,
                   "finish_reason": choice.get("finish_reason")})
    return pieces


def stream_id(block: bytes) -> tuple[str, bool] | None:
    """The answer id the first event of ``block`` naming one carries, and whether it is chat.
    (Azure's first chunk has an empty id: skipped.)"""
    for line in block.splitlines():
        if not line.startswith(b"data:") or b'"id"' not in line:
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(found := event.get("id"), str) and found:
            return found, event.get("object") != "text_completion"
    return None


class Renamer:
    """One client's stream under an id of its own: the answer's id, replaced in each block.

    The id is found once (the first event naming it); after that a block costs one
    ``bytes.replace`` of the quoted id, never a parse. Only a JSON string equal to the whole
    id is replaced, which an escaped quote inside some text can never be.
    """

    __slots__ = ("new", "old")

    def __init__(self) -> None:
        self.old: bytes | None = None
        self.new = b""

    def __call__(self, block: bytes) -> bytes:
        if self.old is None:
            found = stream_id(block)
            if found is None:
                return block  # nothing named yet (a comment, Azure's filter chunk)
            self.old = orjson.dumps(found[0])
            self.new = orjson.dumps(fresh_id(*found))
        return block.replace(self.old, self.new)
