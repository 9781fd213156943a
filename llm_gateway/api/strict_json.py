"""JSON request bodies without duplicate keys, at orjson's speed.

The gateway acts on the parsed body but forwards the raw bytes. orjson keeps the last of two
equal keys, so `{"model": "a", "model": "b"}` would be checked, limited and charged as "b"
while an upstream that keeps the first one serves "a". A key twice in one object is refused.

orjson cannot report duplicates, and json with an `object_pairs_hook` costs several times
orjson's parse (1.5 KiB chat body: 29 us against 4 us), so that exact check runs only when
two cheap ones fail (the same body: +1.6 us as SDKs send it, +8 us with json.dumps' spaces):
1. the parsed body serialises back to the very bytes received: then no key was dropped. This
   is the case for SDK clients (compact JSON, as orjson writes it).
2. the body has as many colons, or as many unescaped quotes followed by a colon (see
   `_key_ends`), as the parsed result has keys: each key is followed by exactly one of each,
   and strings can only add to those counts, so equal counts mean no key was dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

MAX_DEPTH = 255  # what orjson.dumps writes

_SPACED_KEY_END = re.compile(rb'" +:')


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def loads(raw: bytes) -> Any:
    """The parsed body (raises orjson.JSONDecodeError, or InvalidRequest for a duplicate key)."""
    body = orjson.loads(raw)
    if not isinstance(body, dict | list):
        return body
    try:
        if orjson.dumps(body) == raw:
            return body
    except orjson.JSONEncodeError:
        # Deeper than orjson writes (255 levels; it reads 1024): every later step that writes
        # the body again (a renamed model, the grouping key, affinity) would fail with a 500.
        raise InvalidRequest(f"The JSON body is nested deeper than {MAX_DEPTH} levels.",
                             code="invalid_json") from None
    try:
        keys = _keys(body)
    except RecursionError:  # nested nearly as deep as orjson allows: check exactly
        keys = -1
    if keys < 0 or (raw.count(b":") != keys
                    # Counting costs ~5 ns a byte, the exact check ~2 ns a byte plus ~0.4 us a
                    # key: over ~130 bytes a key (long strings, few keys), check exactly.
                    and (len(raw) > 128 * keys or _key_ends(raw) != keys)):
        _check_exactly(raw)
    return body


def _key_ends(raw: bytes) -> int:
    """The quotes followed by a colon that are not escaped (-1: not countable cheaply).

    With no quote followed by whitespace, every key's closing quote is directly followed by
    its colon; with no two backslashes before any quote, a quote after a backslash is always
    an escaped one, inside a string. So this counts each key once, plus any string starting
    with a colon: never fewer than the keys in `raw`.
    """
    # Raw tabs and line breaks are only ever whitespace between tokens (strings escape
    # them), so their absence is a one-byte search; spaces before a colon are the last case.
    if (b"\n" in raw or b"\t" in raw or b"\r" in raw or b'\\\\"' in raw
            or _SPACED_KEY_END.search(raw)):
        return -1
    return raw.count(b'":') - raw.count(b'\\":')


def _keys(node: dict | list) -> int:
    if type(node) is dict:
        count = len(node)
        children: Any = node.values()
    else:
        count = 0
        children = node
    for child in children:
        kind = type(child)
        if kind is dict or kind is list:
            count += _keys(child)
    return count


def _check_exactly(raw: bytes) -> None:
    try:
        json.loads(raw, object_pairs_hook=_unique)
    except _Duplicate as dup:
        raise InvalidRequest(
            f"The JSON body has the key '{clip(dup.key)}' twice in one object; each key may "
            "appear only once.", code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("The JSON body is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:  # what orjson took, json refused: nothing vouches for it
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}",
                             code="invalid_json") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return obj
