"""Request handlers of the fake OpenAI upstream: one per OpenAI endpoint, plus the echo.

The bodies themselves are built by :mod:`llm_gateway.testing.fake_responses`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.fake_connections import FakeConnections, _EventStream


@dataclass
class _Incoming:
    """What a handler needs of a request, once its body has been read."""

    method: str
    path: str
    query: str
    request: Request
    json: Any | None
    size: int
    sha256: str
    raw: bytes = b""  # the body as read (echo bodies over 1 MiB: b"")


def _json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def _error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> Response:
    return Response(
        fr.error_body(message, type_, code, param),
        status_code=status,
        media_type="application/json",
    )


def _json_object(inc: _Incoming) -> dict[str, Any]:
    if not isinstance(inc.json, dict):
        raise fr.BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        )
    return inc.json


class FakeEndpoints:
    """The endpoints of :class:`~llm_gateway.testing.fake_upstream.FakeUpstream`."""

    models: list[str]
    _lock: threading.Lock
    _stored: dict[str, dict[str, Any]]

    def _stream(self, built: tuple[list[bytes], int]) -> _EventStream:
        # A mixin: self is always the FakeUpstream it is part of, its connections' too.
        return _EventStream(cast(FakeConnections, self), *built)

    # --- endpoints ----------------------------------------------------------------------------

    def _chat(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.chat_answer(body)
        if body.get("stream") is True:
            return self._stream(fr.chat_stream(answer))
        return _json_response(fr.chat_completion(answer))

    def _completions(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.completion_answer(body)
        if body.get("stream") is True:
            return self._stream(fr.completion_stream(answer))
        return _json_response(fr.completion(answer))

    def _embeddings(self, inc: _Incoming) -> Response:
        return _json_response(fr.embeddings(_json_object(inc)))

    def _models(self, inc: _Incoming) -> Response:
        return _json_response(fr.model_list(self.models))

    def _model(self, inc: _Incoming) -> Response:
        model_id = inc.request.path_params["model_id"]
        if model_id not in self.models:
            return _error(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        return _json_response(fr.model_object(model_id))

    def _responses(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        answer = fr.response_answer(body)
        final = fr.response_object(answer, body)
        if final["store"]:
            with self._lock:
                self._stored[answer.id] = final
        if body.get("stream") is True:
            return self._stream(fr.response_stream(answer, final, body))
        return _json_response(final)

    def _response(self, inc: _Incoming) -> Response:
        response_id = inc.request.path_params["response_id"]
        with self._lock:
            stored = (
                self._stored.pop(response_id, None)
                if inc.method == "DELETE"
                else self._stored.get(response_id)
            )
        if stored is None:
            return _error(
                404, f"Response with id '{response_id}' not found.", "invalid_request_error", None
            )
        if inc.method == "DELETE":
            return _json_response(fr.response_deleted(response_id))
        return _json_response(stored)

    def _echo(self, inc: _Incoming) -> Response:
        size_param = inc.request.query_params.get("size")
        if inc.method == "GET" and size_param is not None:
            if not size_param.isdigit():
                raise fr.BadRequest("Invalid 'size': expected a non-negative integer.", "size")
            size = int(size_param)
            return StreamingResponse(
                _download(size),
                media_type="application/octet-stream",
                headers={"content-length": str(size)},
            )
        return _json_response(
            {
                "object": "echo",
                "method": inc.method,
                "path": inc.path,
                "query": inc.query,
                "content_type": inc.request.headers.get("content-type"),
                "bytes": inc.size,
                "sha256": inc.sha256,
            }
        )

    def _unknown(self, inc: _Incoming) -> Response:
        return _error(
            404, f"Invalid URL ({inc.method} {inc.path})", "invalid_request_error", "unknown_url"
        )


async def _read_body(
    request: Request,
    *,
    hashing: bool,
    keep_limit: int | None,
) -> tuple[bytes, int, str]:
    """Read the body as a stream: (kept bytes, total size, sha256 hex or "")."""
    digest = hashlib.sha256() if hashing else None
    parts: list[bytes] = []
    size = 0
    keep = True
    async for chunk in request.stream():
        size += len(chunk)
        if digest is not None:
            digest.update(chunk)
        if keep:
            parts.append(chunk)
            if keep_limit is not None and size > keep_limit:
                keep, parts = False, []
    return b"".join(parts), size, digest.hexdigest() if digest is not None else ""


async def _download(size: int) -> AsyncIterator[bytes]:
    for offset in range(0, size, fr.DOWNLOAD_PIECE):
        yield fr.download_piece(offset, min(fr.DOWNLOAD_PIECE, size - offset))
