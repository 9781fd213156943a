"""Endpoint families of the passthrough: which non-model `/v1/...` paths a gateway relays.

A family is the first path segment after `/v1` (`/v1/images/generations` -> `images`), with
two spellings folded into one (`threads` -> `assistants`, the legacy `fine-tunes` ->
`fine_tuning`); an unknown segment is a family of its own name.
"""

from __future__ import annotations

import re

ALL = "*"  # in a list: every family

# The default of `routing.passthrough_endpoints`: the OpenAI families whose calls the gateway
# can check, count and record, for a gateway used in production. Left out on purpose:
# `realtime` (it mints client secrets that then talk to OpenAI directly, around the gateway),
# `organization` (OpenAI's admin API: users, projects, keys of the whole organisation),
# `models` (`DELETE /v1/models/{id}` deletes the organisation's fine-tuned model), and any
# family OpenAI adds later. List them (or "*") to relay them.
DEFAULT_ENDPOINTS: tuple[str, ...] = (
    "files", "uploads", "batches", "images", "audio", "moderations", "fine_tuning",
    "vector_stores", "assistants", "responses", "conversations", "containers", "evals", "chat",
)

_ALIASES = {"threads": "assistants", "fine-tunes": "fine_tuning"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")


def family_of(path: str) -> str:
    """The family of a `/v1/...` path ("" for `/v1/` itself)."""
    segment = path[len("/v1/"):].split("/", 1)[0] if path.startswith("/v1/") else ""
    return _ALIASES.get(segment, segment)


def family_problem(name: str) -> str | None:
    """Why `name` cannot be a family in a list (config, team, key), or None."""
    if name == ALL or _NAME.match(name):
        return None
    return (f"{name[:40]!r} is not an endpoint family (lower-case letters, digits, '_', '-', "
            "e.g. files, images, audio; or \"*\" for all)")


def families_problem(names: list[str]) -> str | None:
    """The config check of a family list."""
    for name in names:
        if not isinstance(name, str) or (problem := family_problem(name)) is not None:
            return problem or "must be a list of endpoint family names"
    return None


def canonical(name: str) -> str:
    return _ALIASES.get(name, name)
