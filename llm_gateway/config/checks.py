"""Field checks shared by the config sections: each returns a problem message or None."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Team names appear in URLs, metric labels, logs and reports: kept plain and short.
# An Entra ID tenant (a GUID or a domain) or client id: one segment of the token URL.
_ENTRA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}\Z")
_TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# The metrics' `team` label values for "no team" and "a team folded away" (metrics.registry
# NONE and OTHER): a team by that name could not be told from them.
RESERVED_TEAM_NAMES = frozenset({"none", "other"})


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


# RFC 9110 field names, less those the gateway itself sets on every upstream request.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_OWN_HEADERS = frozenset({
    "authorization", "host", "content-length", "content-type", "transfer-encoding",
    "connection", "accept-encoding", "openai-organization", "openai-project",
})


def header_name(value: str) -> str | None:
    if not _TOKEN.match(value):
        return "must be an HTTP header name (letters, digits, !#$%&'*+-.^_`|~), e.g. x-request-id"
    if value.lower() in _OWN_HEADERS:
        return f"{value!r} is a header the gateway sets itself; choose another"
    return None


def entra_id(value: str) -> str | None:
    if _ENTRA_ID.match(value):
        return None
    return "must be a GUID or a domain name (letters, digits, '.' and '-')"


def non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def team_name(value: str) -> str | None:
    if not _TEAM_NAME.match(value):
        return ("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit")
    if value.lower() in RESERVED_TEAM_NAMES:
        return (f"{value!r} is reserved: the metrics use it for requests without a team "
                "(none) or beyond the teams they track (other)")
    return None
