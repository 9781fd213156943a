"""Every other `/v1/...` path (files, batches, images, audio, moderations, fine-tuning, vector
stores, ...) relayed to the default upstream, both bodies streamed and never held whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

from llm_gateway.api.body import declared_length, stream_body
from llm_gateway.api.dispatch import caller
from llm_gateway.api.result import send_result
from llm_gateway.backends.headers import client_headers
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.call import Result
from llm_gateway.errors import NotFound, PayloadTooLarge


def _has_body(scope) -> bool:
    length = declared_length(scope)
    if length is not None:
        return length > 0
    return any(k == b"transfer-encoding" for k, _ in scope["headers"])


async def relay(scope, receive, send) -> None:
    state = scope["lgw.state"]
    backend = state.passthrough
    if backend is None:
        raise NotFound(f"No upstream is configured for {scope['path']}.")
    limit = state.config.server.max_upload_bytes
    length = declared_length(scope)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    body = stream_body(receive, limit) if _has_body(scope) else None
    result = await forward_request(backend, scope, body)
    await send_result(result, scope, receive, send)


async def forward_request(
    backend: UpstreamBackend, scope, body: AsyncIterator[bytes] | None
) -> Result:
    """Relay this request, as the client made it, to `backend`."""
    principal = await caller(scope)
    record = scope.get("lgw.record")  # metrics and the request log: which backend, how long
    if record is not None:
        record.enter(backend.name)
    try:
        return await backend.forward(
            scope["method"],
            scope["path"][len("/v1"):],
            scope["query_string"].decode("latin-1"),
            client_headers(scope["headers"], keep_encoding=True),
            scope["lgw.request_id"],
            body,
            principal.credentials_for(backend.name),
        )
    finally:
        if record is not None:
            record.leave()
