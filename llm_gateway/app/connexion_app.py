"""Connexion, trimmed to what a gateway hot path can afford.

Connexion builds the API from our OpenAPI documents (every operationId must resolve to a
handler, or start-up fails) and runs the lifespan. Requests are routed once, by the edge's
path table (app/edge.py), which calls an operation directly. Two things are
replaced, both measured (bench/overhead): its per-request validation (jsonschema walked per
request; we compile validators once, see validation.py) and its per-request operation wrapper,
which rebuilds decorators and parses parameters and forms on every call. Our operations hand
the handler a Starlette Request and send the ASGI response it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from connexion import AsyncApp
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Any]]


class Operation:
    """An operation's handler as an ASGI app: a Starlette Request in, an ASGI response out."""

    __slots__ = ("fn", "operation_id")

    def __init__(self, fn: Handler, operation_id: str) -> None:
        self.fn = fn
        self.operation_id = operation_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.fn(Request(scope, receive))
        await response(scope, receive, send)


class _Api(AsyncApi):
    def make_operation(self, operation) -> Operation:
        return Operation(operation.function, operation.operation_id)


class _ASGIApp(AsyncASGIApp):
    api_cls = _Api


class GatewayConnexionApp(AsyncApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Swap in lean operations before any API is added (the middleware stack is built lazily).
        self._middleware_app = _ASGIApp()
        self.middleware.app = self._middleware_app


# Routing and lifespan only: errors are shaped at our edge, validation is ours, and auth is
# a layer of the request path rather than a spec security scheme.
MIDDLEWARES = [RoutingMiddleware, LifespanMiddleware]


def build_connexion_app(
    specs: list[dict],
    handlers: Mapping[str, Handler],
    lifespan: Callable[[Any], AbstractAsyncContextManager[None]] | None = None,
) -> AsyncApp:
    app = GatewayConnexionApp(__name__, middlewares=MIDDLEWARES, lifespan=lifespan)
    resolver = Resolver(function_resolver=lambda operation_id: handlers[operation_id])
    for spec in specs:
        app.add_api(spec, resolver=resolver, validate_responses=False, strict_validation=False)
    return app
