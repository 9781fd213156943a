"""The two objects that travel the request path: a `Call` going in, a `Result` coming back.

Everything between `api/` and `backends/` passes a Call along and gets a Result back, so a
layer (auth, limits, grouping, routing) can be added without touching its neighbours.
"""

from __future__ import annotations

import os
from bisect import insort
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType
from typing import Any

import orjson

from llm_gateway.principal import Credentials, Principal
from llm_gateway.stream.observer import Observer
from llm_gateway.tracing.base import NO_SPAN, Span

NO_HINTS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class Call:
    """One model request, as the backends see it."""

    operation: str  # OpenAI operationId, e.g. "createChatCompletion"
    endpoint: str  # path relative to an OpenAI base URL, e.g. "/chat/completions"
    model: str  # the model name the client asked for
    body: dict[str, Any]  # the parsed JSON body
    raw: bytes  # the body exactly as the client sent it
    stream: bool
    request_id: str
    headers: Mapping[str, str] = field(default_factory=dict)  # client headers worth forwarding
    target_model: str | None = None  # the name the backend must see, when routing renamed it
    principal: Principal | None = None  # who is calling (filled by auth)
    # Upstream credentials replacing the backend's own (a team's key, passthrough mode).
    credentials: Credentials | None = None
    # Whether the client itself asked for stream usage (stream_options.include_usage); the
    # gateway always asks the backend, and strips the usage chunk when this is False.
    wants_usage: bool = True
    # The client's x-lgw-* request headers (directives to the gateway, e.g. x-lgw-group: off):
    # read by the layers, never forwarded upstream.
    hints: Mapping[str, str] = field(default_factory=lambda: NO_HINTS)
    # Whether the caller may use a model name (its key's and team's lists): routing asks it
    # before a fallback to another model. None: any model (no keys).
    may_use: Callable[[str], bool] | None = None
    # The span the next hop continues (tracing/attempt.py): the request's, then each backend
    # attempt's while it runs. The no-op span when tracing is off.
    span: Span = NO_SPAN
    # This call's own id, 64 random bits: unique where `request_id` need not be (a client may
    # send the same x-request-id twice, at once). What a backend keys its own record of the
    # call on, for `usage_of`.
    call_id: str = field(default_factory=lambda: os.urandom(8).hex())

    def payload(self, model: str | None = None) -> bytes:
        """The body to send to the backend; the client's own bytes unless the model was renamed
        (by routing, or to `model`: the name a backend knows it by, e.g. an Azure deployment)."""
        name = self.target_model if model is None else model
        if name is None or name == self.model:
            return self.raw
        return orjson.dumps({**self.body, "model": name})


_stage = attrgetter("stage")  # an observer's place in Result.observers


@dataclass(slots=True)
class Result:
    """A backend's answer: a whole body, or a stream of byte blocks holding whole SSE events."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    media_type: str = "application/json"
    backend: str = ""
    # The backend whose workers were all full when the call spilled over to this one (metrics).
    spilled_from: str | None = None
    # Which of a route's deployments answered (x-lgw-deployment, the ledger), how many
    # deployments were tried for it, and why the call went to a fallback model, if it did:
    # (reason, the model it fell back to) (x-lgw-fallback; routing/fallbacks.py).
    deployment: str | None = None
    attempts: int = 1
    fallback: tuple[str, str] | None = None
    # How request grouping answered: None (not eligible), "miss" (it led a backend call),
    # "coalesced" (it shared another request's call) or "hit" (from the response cache).
    grouping: str | None = None
    # Releases what the source holds (an open upstream response) when nobody reads the stream;
    # called once, by the relay's close (stream/relay.py) or by `aclose` for an unused result.
    close: Callable[[], Awaitable[None]] | None = None
    # The client left mid-stream: whether to cancel the request's task at once (the default).
    # A shared stream's reader that is pulling for others says no (grouping/fanout.py).
    on_gone: Callable[[], bool] | None = None
    # The layers watching this answer, in the order of their stage (stream/observer.py).
    observers: list[Observer] = field(default_factory=list)
    # Its observers were told how it ended (by its relay), or it was released unread.
    ended: bool = False

    def observe(self, observer: Observer) -> None:
        insort(self.observers, observer, key=_stage)

    async def aclose(self) -> None:
        """Release a result that will not be relayed (nothing is observed)."""
        self.ended = True
        if self.close is not None:
            close, self.close = self.close, None
            await close()
