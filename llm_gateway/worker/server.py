"""The worker's HTTP app: OpenAI's endpoints for one model, plus /health and /metrics.

Starlette routes the few paths; every handler parses, asks the prompter for a job, submits
it to the engine and shapes what comes back. Errors are OpenAI-shaped, built in one place
(`llm_gateway.web.responses.error_response`), and every response echoes `x-request-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llm_gateway.backends.sse import DONE
from llm_gateway.errors import (
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    status_error_type,
)
from llm_gateway.web.body import paced, read_body
from llm_gateway.web.responses import (
    BytesResponse,
    IteratorSource,
    StreamResponse,
    error_response,
)
from llm_gateway.worker.config import WorkerConfig
from llm_gateway.worker.engines.base import Engine, EngineClosed, QueueFull
from llm_gateway.worker.metrics import CONTENT_TYPE
from llm_gateway.worker.prompts import Prepared, Prompter
from llm_gateway.worker.shapes import ChatShaper, CompletionShaper, embedding_list, model_list, sse
from llm_gateway.worker.state import EngineFactory, WorkerState
from llm_gateway.worker.streaming import ClientGone, collect, sse_blocks, unless_disconnected
from llm_gateway.worker.toolcalls.stream import tool_collect, tool_sse_blocks
from llm_gateway.worker.tools import tool_chunks, tool_response
from llm_gateway.worker.tracing import traced
from llm_gateway.worker.usage_log import UsageLog

log = logging.getLogger(__name__)

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
       (b"x-accel-buffering", b"no")]
_GOOD_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def _json(obj: dict, status: int = 200) -> BytesResponse:
    return BytesResponse(status, orjson.dumps(obj), list(JSON))


def _state(request: Request) -> WorkerState:
    return request.app.state.worker


def endpoint(handler: Callable[[Request], Awaitable]) -> Callable[[Request], Awaitable]:
    """Every failure before the response starts becomes an OpenAI-shaped error here."""

    @functools.wraps(handler)
    async def run(request: Request):
        try:
            return await handler(request)
        except ClientGone:
            log.info("client went away; its request was cancelled")
            return BytesResponse(499, b"", [])  # nobody is left to read it
        except Exception as exc:
            return error_response(exc)

    return run


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except QueueFull as exc:
        raise RateLimited(f"The worker's queue is full ({exc}); retry shortly.",
                          code="queue_full", headers={"Retry-After": "1"}) from None
    except EngineClosed as exc:
        raise ServiceUnavailable(f"The worker is not serving: {exc}.",
                                 code="worker_unavailable") from None


async def _json_body(request: Request, operation: str) -> dict:
    raw = await read_body(request.scope, request.receive, _state(request).config.max_body_bytes)
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is expected.",
                             code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}",
                             code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    _state(request).validators[operation](body)
    return body


async def _generate(request: Request, engine: Engine, prepared: Prepared,
                    shaper: ChatShaper | CompletionShaper):
    with engine_errors():
        stream = await engine.submit(prepared.job)
    # Counted by request id, so the gateway can ask what a cut-short stream used.
    stream = _usage_log(request).watch(stream, request_id_of(request), prepared.job,
                                       engine.cancel)
    stream = traced(_state(request).tracer, request.headers, prepared.job, prepared.model,
                    stream)
    histogram = _state(request).metrics.time_per_output_token
    logprobs = prepared.job.logprobs
    plan = prepared.tools  # chat with tools: the output goes through the syntax's parser
    stop = functools.partial(engine.cancel, prepared.job.id)
    if prepared.stream:
        blocks = tool_sse_blocks(stream, shaper, plan, stop, histogram) \
            if plan is not None and isinstance(shaper, ChatShaper) \
            else sse_blocks(stream, shaper, logprobs, histogram)
        return StreamResponse(200, IteratorSource(blocks), list(SSE))
    try:
        whole = tool_collect(stream, shaper, plan, stop, histogram) \
            if plan is not None and isinstance(shaper, ChatShaper) \
            else collect(stream, shaper, logprobs, histogram)
        body = await unless_disconnected(request.receive, whole)
    finally:
        await stream.aclose()  # a no-op once it finished; cancels it otherwise
    return _json(body)


@endpoint
async def chat_completions(request: Request):
    body = await _json_body(request, "createChatCompletion")
    engine, prompter = _state(request).ready()
    if prompter.uses_tool_handler(body):
        return await _tool_call(request, engine, prompter, body)
    prepared = prompter.chat(body)
    return await _generate(request, engine, prepared,
                           ChatShaper(prepared.model, prepared.include_usage,
                                      prepared.job.n))


async def _tool_call(request: Request, engine: Engine, prompter: Prompter, body: dict):
    stream = bool(body.get("stream"))
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    shaper = ChatShaper(body["model"], include_usage)
    with engine_errors():
        try:
            result = await unless_disconnected(
                request.receive, engine.run_chat_handler(prompter.handler_request(body)))
        except ValueError as exc:  # the library's word for a bad request (too long, ...)
            raise InvalidRequest(str(exc), param="messages") from None
    used = result.get("usage") or {}
    _usage_log(request).record(request_id_of(request), used.get("prompt_tokens", 0),
                               used.get("completion_tokens", 0))
    if not stream:
        return _json(tool_response(result, shaper))

    async def blocks() -> AsyncIterator[bytes]:
        for chunk in tool_chunks(result, shaper):
            yield sse(chunk)
        yield DONE

    return StreamResponse(200, IteratorSource(blocks()), list(SSE))


@endpoint
async def completions(request: Request):
    body = await _json_body(request, "createCompletion")
    engine, prompter = _state(request).ready()
    prepared = prompter.completion(body)
    return await _generate(request, engine, prepared,
                           CompletionShaper(prepared.model, prepared.include_usage,
                                            prepared.echo, prepared.job.n))


@endpoint
async def embeddings(request: Request):
    state = _state(request)
    body = await _json_body(request, "createEmbedding")
    if not state.config.embeddings:
        raise InvalidRequest("This worker was started with --no-embeddings, so it serves no "
                             "embeddings.", param="model", code="embeddings_unsupported")
    engine, prompter = state.ready()
    inputs = prompter.embedding_inputs(body)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'.",
                             param="encoding_format", code="invalid_value")
    with engine_errors():
        vectors, count = await unless_disconnected(request.receive, engine.embed(inputs))
    return _json(embedding_list(body["model"], vectors, count, encoding))


@endpoint
async def list_models(request: Request):
    state = _state(request)
    return _json(model_list(state.name, state.created))


@endpoint
async def request_usage(request: Request):
    """Internal (the gateway's): what a recent request used, even if it was cut short.

    ``?wait=S`` waits up to S seconds (at most 10) for a request still running to end.
    """
    request_id = request.path_params["request_id"]
    try:
        wait = float(request.query_params.get("wait", "0"))
    except ValueError:
        raise InvalidRequest("wait must be a number of seconds.", param="wait") from None
    entry = await _usage_log(request).wait(request_id, wait)
    if entry is None:
        raise NotFound(f"No recent request has the id '{request_id}'.", code="unknown_request")
    return _json(entry.as_json(request_id))


def _usage_log(request: Request) -> UsageLog:
    return request.app.state.usage


@endpoint
async def health(request: Request):
    state = _state(request)
    return _json(state.health(), 200 if state.status == "ok" else 503)


@endpoint
async def metrics(request: Request):
    body = _state(request).metrics.render()
    return BytesResponse(200, body, [(b"content-type", CONTENT_TYPE.encode())])


async def _http_error(request: Request, exc: Exception):
    """Starlette's own 404/405 (unknown path, wrong method), OpenAI-shaped."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    err = status_error_type(status)
    err.message = f"{request.method} {request.url.path}: {getattr(exc, 'detail', '') or status}"
    err.headers.update(getattr(exc, "headers", None) or {})
    return error_response(err)


_REQUEST_ID = "llm_gateway.request_id"  # the one scope key the worker adds


def request_id_of(request: Request) -> str:
    """This request's id (`RequestIds`)."""
    rid = request.scope[_REQUEST_ID]
    assert isinstance(rid, str)
    return rid


class RequestIds:
    """Accept (or make) an `x-request-id` and return it on every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = next((v for k, v in scope["headers"] if k == b"x-request-id"
                    and _GOOD_REQUEST_ID.match(v)), None) or b"req_" + uuid.uuid4().hex.encode()
        scope[_REQUEST_ID] = rid.decode()

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class PacedBodies:
    """A body that stalls or trickles is a 408 (`web/body.py`), as at the gateway."""

    def __init__(self, app, seconds: float, min_rate: float) -> None:
        self.app = app
        self.seconds = seconds
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = paced(receive, self.seconds, self.min_rate,
                            rate_setting="--body-min-bytes-per-second")
        await self.app(scope, receive, send)


def create_app(config: WorkerConfig, *, engine_factory: EngineFactory | None = None) -> Starlette:
    state = WorkerState(config, engine_factory)
    usage = UsageLog()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load())  # listen first, load in the background
        try:
            yield
        finally:
            loading.cancel()
            await state.close()
            await usage.aclose()

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/internal/usage/{request_id}", request_usage, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    pace = Middleware(PacedBodies, config.body_timeout_seconds, config.body_min_bytes_per_second)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(RequestIds), pace],
                    exception_handlers={HTTPException: _http_error})
    app.state.worker = state
    app.state.usage = usage
    return app
