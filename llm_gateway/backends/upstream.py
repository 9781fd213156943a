"""An OpenAI-compatible upstream API (OpenAI itself, Azure-style proxies, vLLM, llama.cpp ...).

Bodies go out as the client sent them (or with only `model` renamed) and come back as bytes:
nothing is re-serialised on the way. Streams are forwarded as they arrive, re-blocked only on
SSE event boundaries.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import httpx

from llm_gateway.backends.headers import response_headers
from llm_gateway.backends.http_upstream import (
    BROKEN_BODY,
    RETRYABLE,
    HttpUpstream,
    body_of,
    release,
)
from llm_gateway.backends.sse import event_blocks
from llm_gateway.backends.stall import StallGuard
from llm_gateway.call import Call, Result
from llm_gateway.config import UpstreamConfig
from llm_gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.principal import Credentials

log = logging.getLogger(__name__)


async def _noting(body: AsyncIterator[bytes], failed: list[GatewayError]) -> AsyncIterator[bytes]:
    """The body, noting the error it raises: the transport reports it as its own failure."""
    try:
        async for chunk in body:
            yield chunk
    except GatewayError as exc:
        failed.append(exc)
        raise


class UpstreamBackend(HttpUpstream):
    def __init__(self, cfg: UpstreamConfig, env: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(cfg, env, **kwargs)
        # OpenAI and Azure serve POST /v1/responses themselves, unless the config says this
        # server lacks it (llama-server, older vLLM): then it is translated to chat.
        self.responses_api = cfg.responses_api

    def _auth_headers(self, cfg: UpstreamConfig, key: str | None) -> dict[str, str]:
        auth: dict[str, str] = {}
        if key:
            auth["authorization"] = f"Bearer {key}"
        if cfg.organization:
            auth["openai-organization"] = cfg.organization
        if cfg.project:
            auth["openai-project"] = cfg.project
        return auth

    # -- the Backend seam ------------------------------------------------------------------
    async def complete(self, call: Call) -> Result:
        headers = self._headers(call.headers, call.request_id, call.credentials)
        call.span.inject(headers)  # tracing on: our attempt's traceparent; off: the client's
        headers["content-type"] = "application/json"
        # We read usage from the bodies, so ask for them uncompressed.
        headers["accept-encoding"] = "identity"
        deadline = self._deadline()
        path, content = self._target(call)
        response = await self._send_with_retries(
            "POST", path, headers=headers, content=content, deadline=deadline
        )
        return await self._result(response, stream=call.stream, deadline=deadline)

    async def list_models(self) -> list[dict[str, Any]]:
        headers = self._headers({}, None)
        response = await self._send_with_retries(
            "GET", "/models", headers=headers, content=None, deadline=self._deadline()
        )
        data = (await self._read_json(response, "GET /models")).get("data") or []
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    # -- transparent passthrough -------------------------------------------------------------
    async def forward(
        self,
        method: str,
        path: str,
        query: str,
        client_headers: Mapping[str, str],
        request_id: str,
        body: AsyncIterator[bytes] | None,
        credentials: Credentials | None = None,
    ) -> Result:
        """Relay any other OpenAI path, streaming both bodies; the client's bytes are never held."""
        url = path + (f"?{query}" if query else "")
        self._url(url)  # an unsafe path is refused here: the caller's error, not an upstream's
        headers = self._headers(client_headers, request_id, credentials)
        deadline = self._deadline()
        if body is None:
            response = await self._send_with_retries(
                method, url, headers=headers, content=None, deadline=deadline
            )
        else:
            # A streamed body cannot be replayed, so no retries here.
            failed: list[GatewayError] = []
            try:
                response = await self._send_once(method, url, headers, _noting(body, failed),
                                                 deadline)
            except Exception as exc:
                if failed:  # the client's body failed (too slow, too large): that is the answer
                    raise failed[0] from None
                if isinstance(exc, RETRYABLE):
                    raise self._unreachable(exc) from None
                raise
        return Result(
            status=response.status_code,
            headers=response_headers(response.headers.raw, keep_length=True, keep_encoding=True),
            stream=self._relay_raw(response),
            media_type=response.headers.get("content-type", "application/octet-stream"),
            backend=self.name,
            close=partial(release, response),
        )

    # -- what a provider kind changes (backends/azure.py) -------------------------------------
    def _use_credentials(self, headers: dict[str, str], credentials: Credentials) -> None:
        """Put a team's own credentials (or the client's, in passthrough mode) in place of ours."""
        if credentials.api_key:
            headers["authorization"] = f"Bearer {credentials.api_key}"
        if credentials.organization:
            headers["openai-organization"] = credentials.organization
        if credentials.project:
            headers["openai-project"] = credentials.project

    def _target(self, call: Call) -> tuple[str, bytes]:
        """Where a model call goes (a path and query after the base URL) and its body."""
        return call.endpoint, call.payload()

    # -- internals ---------------------------------------------------------------------------
    def _headers(self, client: Mapping[str, str], request_id: str | None,
                 credentials: Credentials | None = None) -> dict[str, str]:
        headers = {**client, **self._static, **self._auth}
        if credentials is not None:
            self._use_credentials(headers, credentials)
        if request_id and self._request_id_header:
            headers[self._request_id_header] = request_id
        return headers

    async def _result(self, response: httpx.Response, *, stream: bool, deadline) -> Result:
        headers = response_headers(response.headers.raw)
        media_type = response.headers.get("content-type", "application/json")
        if stream and response.status_code == 200:
            return Result(
                status=200,
                headers=headers,
                stream=self._relay_events(response, deadline),
                media_type=media_type,
                backend=self.name,
                close=partial(release, response),
            )
        body = await self._read_whole(response, deadline)
        return Result(
            status=response.status_code, headers=headers, body=body, media_type=media_type,
            backend=self.name,
        )

    def _relay_events(self, response: httpx.Response, deadline) -> AsyncIterator[bytes]:
        chunks = body_of(response)
        return self._relay(response, chunks, event_blocks(chunks, self.max_event_bytes),
                           deadline)

    async def _relay_raw(self, response: httpx.Response) -> AsyncIterator[bytes]:
        chunks = body_of(response, raw=True)
        guard = StallGuard(self.cfg.timeouts.read)  # each piece within the read timeout
        try:
            while True:
                try:
                    chunk = await guard.next(chunks)
                except StopAsyncIteration:
                    return
                yield chunk
        except TimeoutError:
            log.warning("upstream %s stalled in a passthrough body", self.name)
            raise UpstreamTimeout(f"upstream '{self.name}' stalled in its answer") from None
        except BROKEN_BODY as exc:
            # Mid-body, all we can do is end it early; a caller that reads the body before
            # answering (a small JSON answer) answers 502 or 504 with this.
            log.warning("upstream %s broke off a passthrough body: %r", self.name, exc)
            if isinstance(exc, httpx.TimeoutException):
                raise UpstreamTimeout(f"upstream '{self.name}' stalled in its answer") from None
            raise UpstreamUnavailable(f"upstream '{self.name}' broke off the response") \
                from None
        finally:
            guard.close()
            await release(response)
