"""Turning a backend's Result into the ASGI response the client gets, through its relay."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from llm_gateway.call import Result
from llm_gateway.stream.relay import Relay
from llm_gateway.web.responses import BeforeBody, BytesResponse, StreamResponse, encode_headers


def to_response(result: Result) -> BytesResponse | StreamResponse | BeforeBody:
    headers = encode_headers(result.headers, result.media_type)
    headers.append((b"x-lgw-backend", result.backend.encode()))
    if result.deployment is not None:
        headers.append((b"x-lgw-deployment", result.deployment.encode()))
    if result.fallback is not None:  # "rate_limit; model=gpt-4o-mini"
        reason, model = result.fallback
        headers.append((b"x-lgw-fallback", f"{reason}; model={model}".encode()))
    if result.stream is not None:
        return StreamResponse(result.status, Relay(result), headers)
    response = BytesResponse(result.status, result.body, headers)
    if not result.observers:
        return response
    return BeforeBody(Relay(result).whole, response)


async def send_result(result: Result, scope: Scope, receive: Receive, send: Send) -> None:
    await to_response(result)(scope, receive, send)
