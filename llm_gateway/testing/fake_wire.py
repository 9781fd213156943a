"""Wire-level pieces of the fake OpenAI upstream: error bodies, SSE framing, download bytes.

Pure functions, no I/O; :mod:`llm_gateway.testing.fake_responses` gathers them with the
response builders.
"""

from __future__ import annotations

from typing import Any

import orjson

# Download pattern period: prime, so it never lines up with the 64 KiB piece size.
_PATTERN_PERIOD = 251
DOWNLOAD_PIECE = 64 * 1024
_PATTERN = bytes(range(_PATTERN_PERIOD)) * (DOWNLOAD_PIECE // _PATTERN_PERIOD + 2)


class BadRequest(Exception):
    """The request body is not something OpenAI would accept; answered as 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return orjson.dumps({"error": error})


def error_kind(status: int) -> tuple[str, str | None]:
    """OpenAI's error ``type`` and ``code`` for an HTTP status."""
    if status == 429:
        return "rate_limit_exceeded", "rate_limit_exceeded"
    if status >= 500:
        return "server_error", None
    if status == 401:
        return "invalid_request_error", "invalid_api_key"
    if status == 403:
        return "permission_error", None
    return "invalid_request_error", None


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def sse_named(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# --- passthrough downloads --------------------------------------------------------------------


def download_piece(offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset+length`` of the deterministic download (byte k is k % 251)."""
    start = offset % _PATTERN_PERIOD
    return _PATTERN[start : start + length]


def download_bytes(size: int) -> bytes:
    """The whole body ``GET /v1/<any>?size=N`` answers, for tests to compare against."""
    return b"".join(
        download_piece(o, min(DOWNLOAD_PIECE, size - o)) for o in range(0, size, DOWNLOAD_PIECE)
    )
