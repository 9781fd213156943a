"""Counting OpenAI tokens ourselves, for streams that ended before the backend reported usage.

tiktoken downloads its BPE files from the internet at first use, and gateways often run where
that is impossible; so the two encodings OpenAI's current models use ship inside this package
(`encodings/*.tiktoken.xz`, byte for byte OpenAI's published files, xz-compressed) and are
checked against the SHA-256 that tiktoken itself expects before use. An encoding that cannot be
loaded (a damaged install) degrades to an estimate of one token per four characters, logged
once: a tokenizer failure never fails a request.

`streamed_text` pulls the generated text out of a stream's SSE blocks (chat, completions,
Responses API) for the completion count. Counting is exact for text; chat framing follows
OpenAI's published rule (3 tokens per message, 1 more for a name, 3 to prime the reply) and
tool definitions count as their JSON, which is close to, not exactly, what OpenAI bills.
Images count a flat 85 tokens each (the "low detail" price): the true figure depends on the
image's size, which is not at hand.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import lzma
import threading
from collections.abc import Iterable
from importlib import resources
from typing import Any

import orjson

log = logging.getLogger(__name__)

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"
# name -> (sha256 of the .tiktoken file, pattern, special tokens); from tiktoken_ext.openai_public,
# whose constructors would download the files.
_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {_ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
         "<|fim_suffix|>": 100260, _ENDOFPROMPT: 100276},
    ),
}
# Model-name prefixes of the older generation; everything else (gpt-4o, gpt-4.1, gpt-5, o1,
# o3, o4, and names we do not know) uses o200k_base, the encoding of every current model.
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-", "davinci-002",
                    "babbage-002")
_CL100K_EXACT = frozenset({"gpt-4"})

PER_MESSAGE = 3  # <|start|>{role}\n ... <|end|>
PER_NAME = 1
REPLY_PRIMING = 3  # <|start|>assistant<|message|>
PER_IMAGE = 85

_lock = threading.Lock()
_failed: set[str] = set()


def encoding_name(model: str) -> str:
    """The tiktoken encoding OpenAI uses for ``model`` (o200k_base when unknown)."""
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-4" style names
    if name in _CL100K_EXACT or name.startswith(_CL100K_PREFIXES):
        # gpt-4-turbo and gpt-4-0613 are cl100k; gpt-4o and gpt-4.1 do not match "gpt-4-".
        return "cl100k_base"
    return "o200k_base"


@functools.cache
def _load(name: str) -> Any:
    """The tiktoken Encoding built from the shipped file; raises when it cannot be."""
    import tiktoken  # here, not at import: loading costs ~0.4 s, paid once, off the event loop

    digest, pattern, specials = _ENCODINGS[name]
    raw = lzma.decompress(
        resources.files(__package__).joinpath("encodings", f"{name}.tiktoken.xz").read_bytes()
    )
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ValueError(f"{name}.tiktoken does not have the expected SHA-256")
    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens=specials)


def encoding(model: str) -> Any | None:
    """The encoding for ``model``, or None (estimate) when it cannot be loaded. Blocking."""
    name = encoding_name(model)
    if name in _failed:
        return None
    with _lock:  # two threads must not both spend 0.4 s building the same table
        try:
            return _load(name)
        except Exception:
            if name not in _failed:
                _failed.add(name)
                log.exception("tokenizer %s unavailable; counting 4 characters a token", name)
            return None


def count_text(text: str, enc: Any | None) -> int:
    if not text:
        return 0
    if enc is None:
        return (len(text) + 3) // 4
    # Special-token text in user content is counted as plain text, as the API does.
    return len(enc.encode(text, disallowed_special=()))


def _content_text(content: Any, images: list[int]) -> str:
    """The text of a message's content (a string or a list of parts); counts image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else orjson.dumps(content).decode()
    texts = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("image_url", "input_image", "image_file"):
            images[0] += 1
        elif isinstance(text := part.get("text"), str):
            texts.append(text)
        elif isinstance(refusal := part.get("refusal"), str):
            texts.append(refusal)
    return "".join(texts)


def _messages(messages: Iterable[Any], enc: Any | None) -> int:
    total = 0
    images = [0]
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += count_text(_content_text(value, images), enc)
            elif key == "name":
                total += PER_NAME + count_text(str(value), enc)
            elif key == "role" and isinstance(value, str):
                total += count_text(value, enc)
            elif key in ("tool_calls", "function_call", "audio") and value:
                total += count_text(orjson.dumps(value).decode(), enc)
            elif key == "tool_call_id" and isinstance(value, str):
                total += count_text(value, enc)
    return total + images[0] * PER_IMAGE


def prompt_tokens(endpoint: str, body: dict[str, Any], enc: Any | None) -> int:
    """The prompt tokens of a request body, as OpenAI would count them (see module docstring)."""
    total = 0
    if endpoint == "/chat/completions":
        messages = body.get("messages")
        total = _messages(messages if isinstance(messages, list) else (), enc) + REPLY_PRIMING
    elif endpoint == "/completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            total = count_text(prompt, enc)
        elif isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            total = len(prompt)  # token ids
        elif isinstance(prompt, list):
            for item in prompt:
                if isinstance(item, str):
                    total += count_text(item, enc)
                elif isinstance(item, list):
                    total += len(item)
    elif endpoint == "/responses":
        given = body.get("input")
        if isinstance(given, str):
            total = count_text(given, enc) + PER_MESSAGE + REPLY_PRIMING
        elif isinstance(given, list):
            total = _messages(given, enc) + REPLY_PRIMING
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            total += count_text(instructions, enc) + PER_MESSAGE
    for key in ("tools", "functions", "response_format", "text"):
        value = body.get(key)
        if value and not (key == "text" and endpoint != "/responses"):
            total += count_text(orjson.dumps(value).decode(), enc)
    return total


def streamed_text(blocks: list[bytes]) -> str:
    """The generated text (content, refusals, tool-call names and arguments) of SSE blocks."""
    parts: list[str] = []
    for block in blocks:
        for line in block.splitlines():
            if not line.startswith(b"data:") or line.startswith(b"data: [DONE]"):
                continue
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                _event_text(event, parts)
    return "".join(parts)


def _event_text(event: dict, parts: list[str]) -> None:
    kind = event.get("type")
    if isinstance(kind, str):  # Responses API: every *.delta but audio carries output text
        delta = event.get("delta")
        if kind.endswith(".delta") and "audio" not in kind and isinstance(delta, str):
            parts.append(delta)
        return
    choices = event.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if isinstance(text := choice.get("text"), str):  # completions
            parts.append(text)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for key in ("content", "refusal", "reasoning_content"):
            if isinstance(value := delta.get(key), str):
                parts.append(value)
        calls = delta.get("tool_calls")
        for tool in calls if isinstance(calls, list) else [delta.get("function_call")]:
            function = tool.get("function", tool) if isinstance(tool, dict) else None
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(value := function.get(key), str):
                        parts.append(value)
