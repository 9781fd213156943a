"""Client-chosen strings the gateway repeats (model names, ids, paths, field names), bounded.

Whatever a client sends may come back in an error message, a log line, a metric label or a
ledger record; a 500 KB model name must not be copied whole into each. `clip` keeps the head
of a long string and says how long it was, so the reader still sees what was sent.
"""

from __future__ import annotations

ECHO_LIMIT = 256  # characters kept of a string repeated back
MAX_MODEL_NAME = 256  # a longer `model` is refused (400): no real model name comes close


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` as text of at most about `limit` characters (plus the note on its length)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
