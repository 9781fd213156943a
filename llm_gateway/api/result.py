"""Turning a backend's Result into the ASGI response the client gets."""

from __future__ import annotations

from llm_gateway.call import Result
from llm_gateway.web.responses import BytesResponse, StreamResponse, encode_headers


def to_response(result: Result) -> BytesResponse | StreamResponse:
    headers = encode_headers(result.headers, result.media_type)
    headers.append((b"x-lgw-backend", result.backend.encode()))
    if result.stream is not None:
        return StreamResponse(result.status, result.stream, headers, on_close=result.close,
                              on_gone=result.on_gone)
    return BytesResponse(result.status, result.body, headers)


async def send_result(result: Result, scope, receive, send) -> None:
    await to_response(result)(scope, receive, send)
