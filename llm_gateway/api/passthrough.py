"""Every other `/v1/...` path (files, batches, images, audio, moderations, fine-tuning, vector
stores, ...), governed like the model endpoints and relayed to an upstream.

auth -> endpoint family allowed (config, team, key) -> object owner -> body read as far as its
`model` -> model allowed -> the objects it names owned -> routed by that model -> limits ->
upstream -> ledger. The policy is in passthrough_policy.py, the body in passthrough_body.py,
the record in passthrough_record.py, the ownership call points in passthrough_owners.py. Bodies
stay streamed both ways, except what must be read to find a model (bounded; multipart forms
spooled) or a small JSON answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from time import perf_counter

from starlette.types import Receive, Scope, Send

from llm_gateway.api import passthrough_body, passthrough_owners
from llm_gateway.api.context import context
from llm_gateway.api.dispatch import caller, check_model_length
from llm_gateway.api.passthrough_batch import models_of_batch, restricted
from llm_gateway.api.passthrough_policy import OFF_MESSAGE, target
from llm_gateway.api.passthrough_record import PassthroughRecord
from llm_gateway.api.result import send_result
from llm_gateway.backends.headers import client_headers
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.call import Call, Result
from llm_gateway.echo import clip
from llm_gateway.errors import GatewayError, NotFound
from llm_gateway.tracing import attempt as attempts


async def relay(scope: Scope, receive: Receive, send: Send) -> None:
    ctx = context(scope)
    state = ctx.state
    method, path = scope["method"], scope["path"]
    policy = state.passthrough_policy
    if policy.off:
        raise NotFound(OFF_MESSAGE.format(method=clip(method), path=clip(path)),
                       code="passthrough_off")
    backend = state.passthrough
    if backend is None:
        raise NotFound(f"No upstream is configured for {clip(path)}.")
    principal = await caller(scope)  # before anything else: a bad key is a 401
    family = policy.family(method, path, principal)
    await passthrough_owners.check(state, principal, method, path, scope)
    server = state.config.server
    body = await passthrough_body.read(scope, receive, server.max_body_bytes,
                                       server.max_upload_bytes)
    try:
        if body.model is not None:
            check_model_length(body.model)
            state.auth.check_model(principal, body.model)
        await passthrough_owners.named(state, principal, method, path, body)  # ids in it
        where = target(state.router, backend, body.model, path)
        if (method == "POST" and path == "/v1/batches" and body.json is not None
                and restricted(principal)):
            for model in sorted(await models_of_batch(
                    where.backend, body.json, context(scope).request_id, principal,
                    server.max_body_bytes, server.max_upload_bytes)):
                state.auth.check_model(principal, model)
        call = Call(operation="passthrough", endpoint=path[len("/v1"):], model=body.model or "",
                    body=body.json or {}, raw=b"", stream=False,
                    request_id=context(scope).request_id, principal=principal,
                    target_model=where.model)
        started = perf_counter()
        admission = await state.gate.admit(principal, call)  # 429 when over a limit
        measured = ctx.record
        if measured is not None:
            measured.metering = True  # the log line waits for the record's usage
        record = PassthroughRecord(state.accountant, call, admission, body, family, method,
                                   started, measured.metered if measured is not None else None)
        content, length = body.stream(where.model)
        result: Result | None = None
        try:
            result = await forward_request(where.backend, scope, content, length)
            result = await passthrough_owners.shown(  # a list: only the caller's objects
                state, principal, scope, result,
                lambda page: forward_request(where.backend, page, None))
            result = await record.watch(result, lambda answer: passthrough_owners.created(
                state, principal, method, path, answer))
        except BaseException as exc:
            if isinstance(exc, GatewayError):
                record.failed(exc)
            else:
                record.gone()
            if result is not None:
                await result.aclose()
            raise
        if admission.headers:
            result.headers.extend(admission.headers)
        await send_result(result, scope, receive, send)
    finally:
        body.close()  # after the answer: an upstream may answer before reading it all


async def forward_request(
    backend: UpstreamBackend, scope, body: AsyncIterator[bytes] | None,
    length: int | None = None,
) -> Result:
    """Relay this request, as the client made it, to `backend` (`body` of `length` bytes,
    when known)."""
    principal = await caller(scope)
    headers = client_headers(scope["headers"], keep_encoding=True)
    if length is not None:
        headers["content-length"] = str(length)
    ctx = context(scope)
    record = ctx.record  # metrics and the request log: which backend, how long
    if record is not None:
        record.enter(backend.name)
    span = attempts.forwarding(ctx.span, backend.name, headers)
    try:
        result = await backend.forward(
            scope["method"],
            scope["path"][len("/v1"):],
            scope["query_string"].decode("latin-1"),
            headers,
            ctx.request_id,
            body,
            principal.credentials_for(backend.name),
        )
    except BaseException as exc:
        attempts.forward_failed(ctx.span, span, exc)
        raise
    finally:
        if record is not None:
            record.leave()
    attempts.forwarded(ctx.span, span, result)
    return result
