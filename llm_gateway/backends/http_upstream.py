"""What every HTTP upstream shares, whatever wire format it speaks: the pooled transport, the
deadline, retries before the first byte, health for /readyz, reading a whole body, and
relaying an event stream with its failures turned into a final error event.

`UpstreamBackend` (OpenAI's format, upstream.py) and `AnthropicBackend` (anthropic.py) are
built on it; each adds its own headers, URLs and bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from llm_gateway.backends.base import Backend
from llm_gateway.backends.health import RecentFailures
from llm_gateway.backends.sse import MAX_EVENT_BYTES, EventTooLarge, ends_stream, error_event
from llm_gateway.backends.stall import StallGuard
from llm_gateway.backends.transport import make_transport, timeout_extension
from llm_gateway.config import UpstreamConfig
from llm_gateway.config.proxies import upstream_proxy
from llm_gateway.errors import GatewayError, InvalidRequest, UpstreamTimeout, UpstreamUnavailable
from llm_gateway.path_safety import refusal

log = logging.getLogger(__name__)

# How long an upstream gets to end its body after the stream's end (it usually comes with it).
DONE_GRACE_SECONDS = 0.25
# Failures where the upstream cannot have started work on the request, so trying again is safe.
# user:password@ in a URL an exception names (a proxy's): never into the log.
_CREDENTIALS = re.compile(r"//[^/@\s'\"]*@")
# The most of an answer read whole (not streamed): OpenAI's largest, 2,048 embeddings of 3,072
# floats as JSON, is about 90 MB. server.max_answer_bytes sets it.
MAX_ANSWER_BYTES = 128 * 1024 * 1024
# The most of a model list (GET /models) read: thousands of models fit in a fraction of it.
MAX_MODEL_LIST_BYTES = 8 * 1024 * 1024
# A body that broke off, or that says it is compressed and is not: the upstream's fault.
BROKEN_BODY = (httpx.TransportError, httpx.DecodingError)
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
             httpx.ProxyError)


def _is_timeout(exc: BaseException) -> bool:
    # httpx-aiohttp reports every aiohttp connection failure as ConnectTimeout; the cause tells.
    cause = exc.__cause__
    if cause is None:
        return isinstance(exc, httpx.TimeoutException)
    return isinstance(cause, TimeoutError)


def _why_unreachable(exc: BaseException) -> str | None:
    """A reason the client may see (TLS, the proxy), found anywhere in the exception's chain;
    None for the rest (refused, reset: the log has the details, and where)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        found = todo.pop()
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, ssl.SSLCertVerificationError):
            return "its TLS certificate could not be verified"
        if isinstance(found, httpx.ProxyError):
            return "the proxy did not open the connection"
        if isinstance(found, ssl.SSLError):
            return "the TLS handshake failed"
        todo += [found.__cause__, found.__context__, getattr(found, "certificate_error", None),
                 getattr(found, "os_error", None)]
    return None


async def release(response: httpx.Response) -> None:
    # Shielded: a client disconnect cancels the relaying task, possibly in the middle of this
    # close; an interrupted close leaves the pooled connection checked out forever.
    await asyncio.shield(response.aclose())


def body_of(response: httpx.Response, *, raw: bool = False) -> AsyncIterator[bytes]:
    """The body as the transport delivers it.

    httpx's own iterators close the response themselves once the body is read, unshielded, so
    a disconnect landing there leaked the connection (seen with the httpx transport in
    bench/overhead). We read the transport's stream and close with `release` instead.
    """
    encoding = response.headers.get("content-encoding", "identity").lower()
    if raw or encoding in ("identity", ""):
        return aiter(response.stream)  # type: ignore[arg-type]
    return response.aiter_bytes()


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the end of a body that is over (its last event came), so that its connection can
    be reused; an upstream that does not end it within DONE_GRACE_SECONDS is cut off (by
    `release`)."""
    with contextlib.suppress(TimeoutError, *BROKEN_BODY):
        async with asyncio.timeout(DONE_GRACE_SECONDS):
            async for _ in chunks:
                pass


class AnswerTooLarge(Exception):
    """A body read whole passed its bound: what was read so far is dropped."""


async def read_all(response: httpx.Response, limit: int) -> bytes:
    """The whole body, refused (AnswerTooLarge) as soon as it passes ``limit`` bytes, by its
    Content-Length or as it arrives (a compressed body: counted as inflated)."""
    length = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding in ("identity", "") and length.isdigit() and int(length) > limit:
        raise AnswerTooLarge
    parts: list[bytes] = []
    size = 0
    async for chunk in body_of(response):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class HttpUpstream(Backend):
    """An upstream API reached over HTTP; subclasses speak its wire format."""

    def __init__(
        self,
        cfg: UpstreamConfig,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep=asyncio.sleep,
        clock=time.monotonic,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.name = cfg.name
        self.max_event_bytes = max_event_bytes  # server.max_sse_event_bytes
        self.max_answer_bytes = max_answer_bytes  # server.max_answer_bytes
        self.cfg = cfg
        self.lists_models = cfg.list_models
        self.models_ttl = cfg.models_ttl_seconds
        self._transport = transport or make_transport(cfg, env)
        self._proxied = upstream_proxy(cfg.proxy, cfg.base_url, env) is not None
        self._timeouts = timeout_extension(cfg)
        self._urls: dict[str, httpx.URL] = {}
        self._sleep = sleep
        self._clock = clock
        self._static = {k.lower(): v for k, v in cfg.headers.items()}
        # Nothing the client did not send goes upstream unless configured (issue 13).
        self._request_id_header = (cfg.request_id_header or "").lower() or None
        self.health = RecentFailures(clock=clock)  # for /readyz
        self._auth = self._own_auth(cfg, env)

    def _own_auth(self, cfg: UpstreamConfig, env: Mapping[str, str]) -> dict[str, str]:
        """The headers carrying the gateway's own credentials, built once: by default its key
        (api_key_env) as `_auth_headers` writes it (Azure also reads a token: azure.py)."""
        return self._auth_headers(cfg, cfg.api_key(env))

    def _auth_headers(self, cfg: UpstreamConfig, key: str | None) -> dict[str, str]:
        """The headers that say who the gateway is to this upstream (its wire format's)."""
        return {}

    def problem(self) -> str | None:
        if self.health.healthy:
            return None
        return f"upstream '{self.name}': its last {self.health.streak} calls failed"

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- sending -----------------------------------------------------------------------------
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
        try:
            request = httpx.Request(method, self._url(path), headers=headers, content=content,
                                    extensions={"timeout": self._timeouts})
        except UnicodeEncodeError:
            # HTTP header values are ASCII on the way out (httpx's rule, and most servers');
            # a client's byte past that is the client's problem, said as such.
            raise InvalidRequest("A header value holds a character outside ASCII; encode it "
                                 "(e.g. RFC 8187) or leave the header out.",
                                 code="invalid_header") from None
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                response = await self._transport.handle_async_request(request)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise
            raise UpstreamTimeout(
                f"upstream '{self.name}' timed out ({type(exc).__name__})"
            ) from None
        except (httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            # The connection broke after the request went out (e.g. a TLS server refusing our
            # client certificate once the handshake is over): not retried, it may have run.
            raise self._unreachable(exc) from None
        if not 100 <= response.status_code <= 599:
            # Not HTTP: nothing to retry or relay (the server cannot even write such a status).
            await release(response)
            log.warning("upstream %s answered status %s", self.name, response.status_code)
            raise UpstreamUnavailable(
                f"upstream '{self.name}' answered with an invalid HTTP status "
                f"({response.status_code})")
        if response.status_code == 407 and self._proxied:
            # The gateway's own proxy (upstreams.<name>.proxy) wants other credentials: the
            # gateway's problem, never a challenge for the client to answer.
            await release(response)
            log.warning("upstream %s: the proxy refused the gateway's credentials (407)",
                        self.name)
            raise UpstreamUnavailable(f"upstream '{self.name}' could not be reached: the "
                                      "proxy refused the gateway (407)")
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
            except RETRYABLE as exc:
                if attempt >= retry.attempts:
                    raise self._unreachable(exc) from None
                log.warning("upstream %s: %s, retrying", self.name, type(exc).__name__)
            else:
                if response.status_code < 500 or attempt >= retry.attempts:
                    return response
                await release(response)
                log.warning("upstream %s: status %s, retrying", self.name, response.status_code)
            await self._sleep(self._backoff(attempt))
            attempt += 1

    def _unreachable(self, exc: Exception) -> GatewayError:
        """The client's error for a connection that failed: which backend, never where it is
        (the exception names the host and port; the log keeps them)."""
        if _is_timeout(exc):
            return UpstreamTimeout(f"upstream '{self.name}' did not accept a connection in time")
        cause = exc.__cause__ or exc
        log.warning("upstream %s is unreachable: %s: %s", self.name, type(cause).__name__,
                    _CREDENTIALS.sub("//", str(cause)))
        why = _why_unreachable(exc)
        return UpstreamUnavailable(f"upstream '{self.name}' could not be reached"
                                   + (f": {why}" if why else ""))

    def _backoff(self, attempt: int) -> float:
        retry = self.cfg.retries
        base = min(retry.max_backoff_seconds, retry.backoff_seconds * (2**attempt))
        return base * (0.9 + 0.2 * random.random())  # a little jitter spreads retry storms

    # -- answers -----------------------------------------------------------------------------
    async def _read_whole(self, response: httpx.Response, deadline: float | None) -> bytes:
        """The whole body (within the deadline); the response is released either way."""
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                return await read_all(response, self.max_answer_bytes)
        except AnswerTooLarge:
            log.warning("upstream %s: an answer larger than %d bytes was refused", self.name,
                        self.max_answer_bytes)
            raise UpstreamUnavailable(
                f"upstream '{self.name}' answered with more than {self.max_answer_bytes} bytes "
                "(server.max_answer_bytes); ask for less, or stream it",
                code="upstream_answer_too_large") from None
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(f"upstream '{self.name}' timed out reading the body") from None
        except BROKEN_BODY as exc:
            raise UpstreamUnavailable(
                f"upstream '{self.name}' broke off the response: {type(exc).__name__}"
            ) from None
        finally:
            await release(response)

    async def _read_json(self, response: httpx.Response, what: str) -> Any:
        """A small JSON object (a model list), read whole, at most MAX_MODEL_LIST_BYTES;
        UpstreamUnavailable unless a 200 with a JSON object."""
        try:
            async with asyncio.timeout(self.cfg.timeouts.total or self.cfg.timeouts.read):
                body = await read_all(response, MAX_MODEL_LIST_BYTES)
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(f"upstream '{self.name}' timed out reading {what}") from None
        except AnswerTooLarge:
            raise UpstreamUnavailable(f"upstream '{self.name}' answered {what} with more than "
                                      f"{MAX_MODEL_LIST_BYTES} bytes") from None
        except BROKEN_BODY as exc:
            raise UpstreamUnavailable(f"upstream '{self.name}' broke off its answer to {what}: "
                                      f"{type(exc).__name__}") from None
        finally:
            await release(response)
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"upstream '{self.name}' answered {response.status_code} to {what}")
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise UpstreamUnavailable(f"upstream '{self.name}' answered {what} with something "
                                      "other than a JSON object")
        return answer

    async def _relay(self, response: httpx.Response, chunks: AsyncIterator[bytes],
                     blocks: AsyncGenerator[bytes, None],
                     deadline: float | None) -> AsyncIterator[bytes]:
        """`blocks` (whole SSE events, made from `chunks`, the response's body) on to the
        client. Once a block holds `data: [DONE]` the rest of the body is only drained; a
        stall, the total timeout, an oversized event or a broken connection ends the stream
        with an error event. The response is released at the end, however it came."""
        guard = StallGuard(self.cfg.timeouts.read)  # (see stall.py: why not the transport's)
        try:
            while True:
                try:
                    block = await guard.next(blocks)
                except StopAsyncIteration:
                    return
                yield block
                if ends_stream(block):
                    # Whatever the upstream does after the end is not the client's wait.
                    await _drain(chunks)
                    return
                if deadline is not None and self._clock() > deadline:
                    yield error_event("upstream stream exceeded the total timeout",
                                      type_="timeout", code="upstream_timeout")
                    return
        except (TimeoutError, httpx.TimeoutException):
            over = deadline is not None and self._clock() >= deadline
            yield error_event("upstream stream exceeded the total timeout" if over
                              else "upstream stream stalled", type_="timeout",
                              code="upstream_timeout")
        except EventTooLarge as exc:
            log.warning("upstream %s: %s", self.name, exc)
            yield error_event(f"upstream '{self.name}' sent an event larger than {exc.limit} "
                              "bytes", code="upstream_event_too_large")
        except BROKEN_BODY as exc:
            yield error_event(f"upstream broke off the stream: {type(exc).__name__}",
                              code="upstream_unavailable")
        finally:
            guard.close()
            await blocks.aclose()
            await release(response)
