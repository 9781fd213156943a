"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from llm_gateway.call import NO_HINTS

# RFC 9110 connection-specific headers: they describe one hop, never the next.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection",
})
# The gateway's own credentials and body framing replace the client's. The client's
# x-request-id goes through untouched; the gateway's own id only under the header an upstream's
# `request_id_header` names.
_REQUEST_DROP = HOP_BY_HOP | {
    "host", "content-length", "authorization", "api-key", "openai-organization",
    "openai-project", "expect",
}
_RESPONSE_DROP = HOP_BY_HOP | {"content-length", "date", "server", "x-request-id"}


def client_headers(raw: Iterable[tuple[bytes, bytes]], *, keep_encoding: bool) -> dict[str, str]:
    """Client request headers worth forwarding upstream (unknown ones included: transparency)."""
    return split_client_headers(raw, keep_encoding=keep_encoding)[0]


def split_client_headers(
    raw: Iterable[tuple[bytes, bytes]], *, keep_encoding: bool
) -> tuple[dict[str, str], Mapping[str, str]]:
    """(headers to forward upstream, the client's x-lgw-* directives to the gateway), read in
    one pass: the directives are never forwarded."""
    out: dict[str, str] = {}
    hints: dict[str, str] | None = None
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name.startswith("x-lgw-"):
            if hints is None:
                hints = {}
            hints[name] = value.decode("latin-1").strip().lower()
            continue
        if name in _REQUEST_DROP:
            continue
        if name == "accept-encoding" and not keep_encoding:
            continue
        out[name] = value.decode("latin-1")
    return out, NO_HINTS if hints is None else hints


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], *, keep_length: bool = False, keep_encoding: bool = False
) -> list[tuple[str, str]]:
    """Upstream response headers to hand back to the client.

    Our own x-request-id wins; the upstream's, which its support desk asks for, is kept under
    another name.
    """
    out: list[tuple[str, str]] = []
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name == "x-request-id":
            out.append(("x-upstream-request-id", value.decode("latin-1")))
            continue
        if name in _RESPONSE_DROP and not (keep_length and name == "content-length"):
            continue
        if name == "content-encoding" and not keep_encoding:
            continue
        out.append((name, value.decode("latin-1")))
    return out
