"""Field checks shared by the config sections: each returns a problem message or None."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def http_url(value: str) -> str | None:
    if not value.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if not urlsplit(value).hostname:
        return "has no host name"
    return None


def env_var_name(value: str) -> str | None:
    # Deliberately does not echo the value: a mistake here is usually a pasted secret.
    if _ENV_NAME.match(value):
        return None
    return (
        "must be the NAME of the environment variable holding the key "
        "(e.g. OPENAI_API_KEY), not the key itself"
    )


def non_empty(value: str) -> str | None:
    return None if value else "must not be empty"
