"""Token usage as the backend reported it in a whole JSON body (a stream's is read from its
events: stream/events.py).

Nothing is re-serialised and little is parsed: a body is searched from its end for the
top-level ``usage`` object and only that object is decoded. Both OpenAI shapes are read:
``prompt_tokens``/``completion_tokens`` (chat, completions, embeddings) and
``input_tokens``/``output_tokens`` (the Responses API).
"""

from __future__ import annotations

import re

import orjson

from llm_gateway.usage import Usage

_KEY = b'"usage"'
# `: {...}` after the key: an object nesting objects one level deep (token details), as usage
# objects do; possessive, so a body cut short cannot make it backtrack.
_OBJECT = re.compile(rb"\s*:\s*(\{(?:[^{}]++|\{[^{}]*+\})*+\})")
_WHOLE_PARSE_LIMIT = 1 << 16  # past this size, a body whose usage hides is not parsed whole


def usage_from_body(body: bytes) -> Usage | None:
    """The usage of a whole JSON answer, or None when it reports none."""
    end = len(body)
    for _ in range(3):  # the top-level object is (nearly) last; a metadata key may come after
        at = body.rfind(_KEY, 0, end)
        if at < 0:
            return None
        found = _OBJECT.match(body, at + len(_KEY))
        if found is not None:
            try:
                usage = Usage.from_object(orjson.loads(found.group(1)))
            except orjson.JSONDecodeError:
                usage = None
            if usage is not None:
                return usage
        end = at
    if len(body) > _WHOLE_PARSE_LIMIT:
        return None
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_object(whole.get("usage")) if isinstance(whole, dict) else None
