"""An OpenAI-compatible upstream API (OpenAI itself, Azure-style proxies, vLLM, llama.cpp ...).

Bodies go out as the client sent them (or with only `model` renamed) and come back as bytes:
nothing is re-serialised on the way. Streams are forwarded as they arrive, re-blocked only on
SSE event boundaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import httpx
import orjson

from llm_gateway.backends.base import Backend
from llm_gateway.backends.headers import response_headers
from llm_gateway.backends.health import RecentFailures
from llm_gateway.backends.sse import (
    MAX_EVENT_BYTES,
    EventTooLarge,
    ends_stream,
    error_event,
    event_blocks,
)
from llm_gateway.backends.transport import make_transport, timeout_extension
from llm_gateway.call import Call, Result
from llm_gateway.config import UpstreamConfig
from llm_gateway.errors import GatewayError, InvalidRequest, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.path_safety import refusal
from llm_gateway.principal import Credentials

log = logging.getLogger(__name__)

# How long an upstream gets to end its body after [DONE] (the end usually comes with it).
DONE_GRACE_SECONDS = 0.25
# Failures where the upstream cannot have started work on the request, so trying again is safe.
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


def _is_timeout(exc: BaseException) -> bool:
    # httpx-aiohttp reports every aiohttp connection failure as ConnectTimeout; the cause tells.
    cause = exc.__cause__
    if cause is None:
        return isinstance(exc, httpx.TimeoutException)
    return isinstance(cause, TimeoutError)


async def _release(response: httpx.Response) -> None:
    # Shielded: a client disconnect cancels the relaying task, possibly in the middle of this
    # close; an interrupted close leaves the pooled connection checked out forever.
    await asyncio.shield(response.aclose())


def _body(response: httpx.Response, *, raw: bool = False) -> AsyncIterator[bytes]:
    """The body as the transport delivers it.

    httpx's own iterators close the response themselves once the body is read, unshielded, so
    a disconnect landing there leaked the connection (seen with the httpx transport in
    bench/overhead). We read the transport's stream and close with `_release` instead.
    """
    encoding = response.headers.get("content-encoding", "identity").lower()
    if raw or encoding in ("identity", ""):
        return aiter(response.stream)  # type: ignore[arg-type]
    return response.aiter_bytes()


async def _noting(body: AsyncIterator[bytes], failed: list[GatewayError]) -> AsyncIterator[bytes]:
    """The body, noting the error it raises: the transport reports it as its own failure."""
    try:
        async for chunk in body:
            yield chunk
    except GatewayError as exc:
        failed.append(exc)
        raise


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the end of a body that is over ([DONE] came), so that its connection can be reused;
    an upstream that does not end it within DONE_GRACE_SECONDS is cut off (by `_release`)."""
    with contextlib.suppress(TimeoutError, httpx.TransportError):
        async with asyncio.timeout(DONE_GRACE_SECONDS):
            async for _ in chunks:
                pass


async def _read(response: httpx.Response) -> bytes:
    return b"".join([chunk async for chunk in _body(response)])


class UpstreamBackend(Backend):
    def __init__(
        self,
        cfg: UpstreamConfig,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep=asyncio.sleep,
        clock=time.monotonic,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.name = cfg.name
        self.max_event_bytes = max_event_bytes  # server.max_sse_event_bytes
        self.cfg = cfg
        self.lists_models = cfg.list_models
        self.models_ttl = cfg.models_ttl_seconds
        self.responses_api = cfg.responses_api and cfg.kind in ("openai", "azure")
        self._transport = transport or make_transport(cfg)
        self._timeouts = timeout_extension(cfg)
        self._urls: dict[str, httpx.URL] = {}
        self._sleep = sleep
        self._clock = clock
        self._auth: dict[str, str] = {}
        key = cfg.api_key(env)
        if key:
            self._auth["authorization"] = f"Bearer {key}"
        if cfg.organization:
            self._auth["openai-organization"] = cfg.organization
        if cfg.project:
            self._auth["openai-project"] = cfg.project
        self._static = {k.lower(): v for k, v in cfg.headers.items()}
        # Nothing the client did not send goes upstream unless configured (issue 13).
        self._request_id_header = (cfg.request_id_header or "").lower() or None
        self.health = RecentFailures(clock=clock)  # for /readyz

    # -- the Backend seam ------------------------------------------------------------------
    async def complete(self, call: Call) -> Result:
        headers = self._headers(call.headers, call.request_id, call.credentials)
        headers["content-type"] = "application/json"
        # We read usage from the bodies, so ask for them uncompressed.
        headers["accept-encoding"] = "identity"
        deadline = self._deadline()
        response = await self._send_with_retries(
            "POST", call.endpoint, headers=headers, content=call.payload(), deadline=deadline
        )
        return await self._result(response, stream=call.stream, deadline=deadline)

    async def list_models(self) -> list[dict[str, Any]]:
        headers = self._headers({}, None)
        response = await self._send_with_retries(
            "GET", "/models", headers=headers, content=None, deadline=self._deadline()
        )
        try:
            body = await _read(response)
        finally:
            await _release(response)
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"upstream '{self.name}' answered {response.status_code} to GET /models"
            )
        data = orjson.loads(body).get("data") or []
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def problem(self) -> str | None:
        if self.health.healthy:
            return None
        return f"upstream '{self.name}': its last {self.health.streak} calls failed"

    async def aclose(self) -> None:
        await self._transport.aclose()

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
                if isinstance(exc, _RETRYABLE):
                    raise self._unreachable(exc) from None
                raise
        return Result(
            status=response.status_code,
            headers=response_headers(response.headers.raw, keep_length=True, keep_encoding=True),
            stream=self._relay_raw(response),
            media_type=response.headers.get("content-type", "application/octet-stream"),
            backend=self.name,
            close=partial(_release, response),
        )

    # -- internals ---------------------------------------------------------------------------
    def _headers(self, client: Mapping[str, str], request_id: str | None,
                 credentials: Credentials | None = None) -> dict[str, str]:
        headers = {**client, **self._static, **self._auth}
        if credentials is not None:
            # A team's own credentials (or the client's, in passthrough mode) replace ours.
            if credentials.api_key:
                headers["authorization"] = f"Bearer {credentials.api_key}"
            if credentials.organization:
                headers["openai-organization"] = credentials.organization
            if credentials.project:
                headers["openai-project"] = credentials.project
        if request_id and self._request_id_header:
            headers[self._request_id_header] = request_id
        return headers

    def _deadline(self) -> float | None:
        total = self.cfg.timeouts.total
        return None if total is None else self._clock() + total

    def _remaining(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - self._clock()
        if left <= 0:
            raise UpstreamTimeout(f"upstream '{self.name}' did not answer in time")
        return left

    def _url(self, path: str) -> httpx.URL:
        """`path` (and query) appended to the base URL as a string. The edge refused any path
        a URL library would resolve (dot segments, encoded separators); checked again here so
        no caller can reach past the base URL."""
        url = self._urls.get(path)
        if url is None:
            problem = refusal(path.partition("?")[0])
            if problem is not None:
                raise InvalidRequest(f"Invalid request path: {problem}.", code="invalid_path")
            url = httpx.URL(self.cfg.base_url + path)
            if "?" not in path and len(self._urls) < 256:  # API paths only, not every query
                self._urls[path] = url
        return url

    async def _send_once(self, method, path, headers, content, deadline) -> httpx.Response:
        request = httpx.Request(method, self._url(path), headers=headers, content=content,
                                extensions={"timeout": self._timeouts})
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                response = await self._transport.handle_async_request(request)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise
            raise UpstreamTimeout(
                f"upstream '{self.name}' timed out ({type(exc).__name__})"
            ) from None
        if not 100 <= response.status_code <= 599:
            # Not HTTP: nothing to retry or relay (the server cannot even write such a status).
            await _release(response)
            log.warning("upstream %s answered status %s", self.name, response.status_code)
            raise UpstreamUnavailable(
                f"upstream '{self.name}' answered with an invalid HTTP status "
                f"({response.status_code})")
        response.request = request
        return response

    async def _send_with_retries(self, method, url, *, headers, content, deadline):
        try:
            response = await self._attempts(method, url, headers, content, deadline)
        except GatewayError:
            self.health.failed()
            raise
        if response.status_code >= 500:
            self.health.failed()
        else:
            self.health.succeeded()
        return response

    async def _attempts(self, method, url, headers, content, deadline) -> httpx.Response:
        retry = self.cfg.retries
        attempt = 0
        while True:
            try:
                response = await self._send_once(method, url, headers, content, deadline)
            except _RETRYABLE as exc:
                if attempt >= retry.attempts:
                    raise self._unreachable(exc) from None
                log.warning("upstream %s: %s, retrying", self.name, type(exc).__name__)
            else:
                if response.status_code < 500 or attempt >= retry.attempts:
                    return response
                await _release(response)
                log.warning("upstream %s: status %s, retrying", self.name, response.status_code)
            await self._sleep(self._backoff(attempt))
            attempt += 1

    def _unreachable(self, exc: Exception) -> GatewayError:
        """The client's error for a connection that failed: which backend, never where it is
        (the exception names the host and port; the log keeps them)."""
        if _is_timeout(exc):
            return UpstreamTimeout(f"upstream '{self.name}' did not accept a connection in time")
        cause = exc.__cause__ or exc
        log.warning("upstream %s is unreachable: %s: %s", self.name, type(cause).__name__, cause)
        return UpstreamUnavailable(f"upstream '{self.name}' could not be reached")

    def _backoff(self, attempt: int) -> float:
        retry = self.cfg.retries
        base = min(retry.max_backoff_seconds, retry.backoff_seconds * (2**attempt))
        return base * (0.9 + 0.2 * random.random())  # a little jitter spreads retry storms

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
                close=partial(_release, response),
            )
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                body = await _read(response)
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(f"upstream '{self.name}' timed out reading the body") from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"upstream '{self.name}' broke off the response: {type(exc).__name__}"
            ) from None
        finally:
            await _release(response)
        return Result(
            status=response.status_code, headers=headers, body=body, media_type=media_type,
            backend=self.name,
        )

    async def _relay_events(self, response: httpx.Response, deadline) -> AsyncIterator[bytes]:
        chunks = _body(response)
        try:
            async for block in event_blocks(chunks, self.max_event_bytes):
                yield block
                if ends_stream(block):
                    # Whatever the upstream does after [DONE] is not the client's wait.
                    await _drain(chunks)
                    return
                if deadline is not None and self._clock() > deadline:
                    yield error_event("upstream stream exceeded the total timeout",
                                      type_="timeout", code="upstream_timeout")
                    return
        except httpx.TimeoutException:
            yield error_event("upstream stream stalled", type_="timeout", code="upstream_timeout")
        except EventTooLarge as exc:
            log.warning("upstream %s: %s", self.name, exc)
            yield error_event(f"upstream '{self.name}' sent an event larger than {exc.limit} "
                              "bytes", code="upstream_event_too_large")
        except httpx.TransportError as exc:
            yield error_event(f"upstream broke off the stream: {type(exc).__name__}",
                              code="upstream_unavailable")
        finally:
            await _release(response)

    async def _relay_raw(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in _body(response, raw=True):
                yield chunk
        except httpx.TransportError as exc:
            # Headers are gone already; all we can do is end the body early.
            log.warning("upstream %s broke off a passthrough body: %r", self.name, exc)
            raise GatewayError("upstream broke off the response") from None
        finally:
            await _release(response)
