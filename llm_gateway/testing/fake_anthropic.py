"""A fake Anthropic upstream: a real HTTP server on 127.0.0.1 speaking the Messages API.

``POST /v1/messages`` answers a JSON Message or, with ``stream: true``, the Messages API's
event sequence (message_start, content_block_start, ping, content_block_delta...,
content_block_stop, message_delta, message_stop); ``GET /v1/models`` lists models in
Anthropic's shape. It checks what Anthropic checks and the gateway could get wrong: the
``x-api-key`` (401 authentication_error), the ``anthropic-version`` header, ``max_tokens``
(required), fields Anthropic does not know, alternation of tool_use and tool_result, and the
context window ("prompt is too long"). Its answers are deterministic echoes
(:mod:`llm_gateway.testing.fake_anthropic_answer`); tests script others::

    with FakeAnthropic(api_key="sk-ant-test") as fake:
        fake.fail_next(529, "overloaded_error", "Overloaded")
        fake.fail_next(429, "rate_limit_error", "Slow down", retry_after="7")
        fake.error_in_stream_next(after=3, type_="overloaded_error")
        fake.answer_next([{"type": "tool_use", ...}], "tool_use")
        fake.cache_next(created=10, read=90)
        ...
        fake.requests[-1].json  # the Messages body the gateway sent

Injections queue up and apply to ``POST /v1/messages`` in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llm_gateway.testing import fake_anthropic_answer as fa
from llm_gateway.testing.threaded import ThreadedServer

MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")


@dataclass
class AnthropicRequest:
    """One request as the fake received it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any | None


@dataclass
class _StreamError:
    after: int  # events sent before the error event
    type: str
    message: str


class FakeAnthropic:
    """The fake Anthropic server; see the module docstring. Control methods are thread-safe.

    ``requests`` (every request, in order) and ``calls`` (``"METHOD /path"`` -> count) are
    reset by :meth:`reset`. ``context_window`` is the prompt size (in words) past which a
    request is "too long".
    """

    def __init__(self, *, api_key: str | None = None, chunk_delay: float = 0.0,
                 context_window: int = 100_000) -> None:
        self.api_key = api_key
        self.chunk_delay = chunk_delay
        self.context_window = context_window
        self.port = 0
        self.requests: list[AnthropicRequest] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._failures: collections.deque[tuple[fa.AnthropicError, str | None]] = \
            collections.deque()
        self._stream_errors: collections.deque[_StreamError] = collections.deque()
        self._scripts: collections.deque[tuple[list[dict[str, Any]], str]] = collections.deque()
        self._caches: collections.deque[tuple[int, int]] = collections.deque()
        self._runner: ThreadedServer | None = None
        self.app = Starlette(routes=[
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL an upstream's `base_url` takes (Anthropic's is .../v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeAnthropic:
        self._runner = ThreadedServer(self.app, name="fake-anthropic", lifespan="off",
                                      timeout_graceful_shutdown=1)
        self.port = self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(force=True, timeout=5)
            self._runner = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control (from the test thread) -------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self._failures.clear()
            self._stream_errors.clear()
            self._scripts.clear()
            self._caches.clear()

    def fail_next(self, status: int, type_: str, message: str, *,
                  retry_after: str | None = None) -> None:
        """The next message request gets this Anthropic error (and a retry-after header)."""
        with self._lock:
            self._failures.append((fa.AnthropicError(status, type_, message), retry_after))

    def error_in_stream_next(self, after: int = 3, type_: str = "overloaded_error",
                             message: str = "Overloaded") -> None:
        """The next streamed answer sends `after` events, then an error event, and ends."""
        with self._lock:
            self._stream_errors.append(_StreamError(after, type_, message))

    def answer_next(self, content: list[dict[str, Any]], stop_reason: str = "end_turn") -> None:
        """The next answer has this content (Anthropic blocks) instead of the echo."""
        with self._lock:
            self._scripts.append((content, stop_reason))

    def cache_next(self, *, created: int = 0, read: int = 0) -> None:
        """The next answer reports these prompt-cache writes and reads."""
        with self._lock:
            self._caches.append((created, read))

    # --- server side --------------------------------------------------------------------------

    async def _record(self, request: Request) -> AnthropicRequest:
        raw = await request.body()
        parsed: Any = None
        if raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(raw)
        recorded = AnthropicRequest(request.method, request.url.path,
                                    dict(request.headers.items()), parsed)
        with self._lock:
            self.calls[f"{request.method} {request.url.path}"] += 1
            self.requests.append(recorded)
        return recorded

    def _refusal(self, headers: dict[str, str]) -> fa.AnthropicError | None:
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return fa.AnthropicError(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return fa.AnthropicError(400, "invalid_request_error",
                                     "anthropic-version: header is required")
        return None

    async def _models(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._refusal(recorded.headers)
        if refused is not None:
            return _error(refused)
        data = [{"type": "model", "id": m, "display_name": m,
                 "created_at": "2025-09-29T00:00:00Z"} for m in MODELS]
        return Response(orjson.dumps({"data": data, "has_more": False, "first_id": MODELS[0],
                                      "last_id": MODELS[-1]}), media_type="application/json")

    async def _messages(self, request: Request) -> Response:
        recorded = await self._record(request)
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            response = _error(failure[0])
            if failure[1] is not None:
                response.headers["retry-after"] = failure[1]
            return response
        body = recorded.json
        try:
            refused = self._refusal(recorded.headers)
            if refused is not None:
                raise refused
            fa.check(body, self.context_window)
        except fa.AnthropicError as exc:
            return _error(exc)
        assert isinstance(body, dict)  # (check refused anything else)
        with self._lock:
            script = self._scripts.popleft() if self._scripts else None
            cache = self._caches.popleft() if self._caches else (0, 0)
            fault = self._stream_errors.popleft() \
                if self._stream_errors and body.get("stream") is True else None
        answer = fa.message(body, script, cache)
        headers = {"request-id": f"req_{answer['id'][4:]}"}
        if body.get("stream") is not True:
            return Response(orjson.dumps(answer), media_type="application/json",
                            headers=headers)
        events = fa.events(answer)
        if fault is not None:
            events = [*events[:fault.after], fa.error_event(fault.type, fault.message)]
        return StreamingResponse(self._paced(events), media_type="text/event-stream",
                                 headers={**headers, "cache-control": "no-cache"})

    async def _paced(self, events: list[bytes]) -> AsyncIterator[bytes]:
        for i, event in enumerate(events):
            if i and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield event


def _error(error: fa.AnthropicError) -> Response:
    return Response(error.body(), status_code=error.status, media_type="application/json")
