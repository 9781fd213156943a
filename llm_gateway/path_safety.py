"""Which request paths the gateway accepts at all, checked before routing.

URL libraries and servers disagree about a path that holds dot segments, encoded separators or
control characters: we route on one reading while an upstream (or the URL library building the
upstream URL) acts on another, e.g. `/v1/x/../chat/completions` escaping the model endpoints.
So such paths are refused outright rather than normalised. No OpenAI path needs any of them.

The common path costs one regex search on the raw path; only a path holding `%`, `\\`, `//`,
`/.` or a control character is looked at closely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Anything that may need a closer look; a raw path without it is plain and safe.
_SUSPECT = re.compile(rb"[%\\\x00-\x1f\x7f]|//|/\.")
_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)
# Model ids may hold '/' (Hugging Face style `org/name`), which clients encode in
# GET /v1/models/{model}; the gateway answers that route itself, never relays it, and the
# decoded path still passes every other check below.
_SLASHED_IDS = b"/v1/models/"
# In the decoded path: `?` and `#` can only come from %3f/%23; a `%` only from %25, a second
# layer of encoding that an upstream would decode once more than we did.
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f\\?#%\ufffd]")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:;[^/]*)?(?:/|$)")  # `..;x` too: servlet containers

_CHAR_PROBLEMS = {
    "\\": "a backslash",
    "?": "an encoded '?' (%3F)",
    "#": "an encoded '#' (%23)",
    "%": "an encoded '%' (%25, double encoding)",
    "\ufffd": "an invalid UTF-8 escape",
}


# One path segment made from a name (an Azure deployment): RFC 3986's unreserved characters,
# which every URL library and server reads as themselves, never as a separator or an escape.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def segment_problem(name: str) -> str | None:
    """Why `name` cannot be one segment of an upstream URL's path as it is, or None."""
    if _UNRESERVED.fullmatch(name) is None:
        if not name:
            return "it is empty"
        bad = next(c for c in name if _UNRESERVED.fullmatch(c) is None)
        what = "a control character" if bad.isascii() and not bad.isprintable() else repr(bad)
        return f"it holds {what}; a URL path segment takes only letters, digits and -._~"
    if _DOT_SEGMENT.fullmatch(name):
        return "it is a '.' or '..' segment"
    return None


def path_problem(scope: Mapping[str, Any]) -> str | None:
    """Why this request's path is refused, or None when it is acceptable."""
    return refusal(scope["path"], scope.get("raw_path"))


def refusal(path: str, raw: bytes | None = None) -> str | None:
    """Why `path` (decoded; `raw`: as it came on the wire, when known) is refused, or None."""
    if raw is None:  # servers other than uvicorn may leave it out
        raw = path.encode("utf-8", "surrogateescape")
    if _SUSPECT.search(raw) is None:
        return None
    return _problem(raw, path)


def _problem(raw: bytes, path: str) -> str | None:
    if _ENCODED_SLASH.search(raw) and not raw.startswith(_SLASHED_IDS):
        return "it holds an encoded '/' (%2F)"
    # Every raw character survives decoding, so the decoded path shows raw and encoded alike.
    bad = _BAD_CHAR.search(path)
    if bad is not None:
        char = bad.group()
        return f"it holds {_CHAR_PROBLEMS.get(char, 'a control character')}"
    if "//" in path:
        return "it holds an empty segment ('//')"
    if _DOT_SEGMENT.search(path):
        return "it holds a '.' or '..' segment"
    return None
