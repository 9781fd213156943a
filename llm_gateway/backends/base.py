"""The `Backend` seam: what the router dispatches a Call to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from llm_gateway.call import Call, Result
from llm_gateway.usage import Usage


class Backend(ABC):
    """Something that answers model calls: an upstream API or a pool of local workers.

    Only `complete` must be written; everything else has a default that fits a backend which
    cannot tell, so callers never need to ask what kind of backend they hold.
    """

    name: str
    lists_models: bool = True  # whether the model list asks it (GET /v1/models)
    models_ttl: float = 300.0  # seconds its model list is cached
    # Served on our own machines: priced only by the served model's own name (a client alias
    # that an upstream's price glob matches must not price it as the upstream's).
    local: bool = False
    fallback: str | None = None  # the model its calls spill over to when it is full
    # Whether it serves OpenAI's Responses API (POST /v1/responses) itself. One that does not
    # (a local pool, a chat-only upstream) gets those calls translated to chat completions by
    # the gateway (api/responses_chat/), which then keeps their conversation state.
    responses_api: bool = False
    # Its calls go to other backends, each of which reports its own failures (a route of
    # deployments: routing/events.py); the metrics then count none for it.
    reports_attempts: bool = False

    @abstractmethod
    async def complete(self, call: Call) -> Result:
        """Answer one call. Errors come back as a non-2xx Result or a GatewayError."""

    async def list_models(self) -> list[dict[str, Any]]:
        """The models this backend serves, as OpenAI model objects."""
        return []

    async def usage_of(self, call_id: str) -> Usage | None:
        """What an earlier call (its `Call.call_id`) used, by the backend's own count, when
        its stream ended before reporting usage (the client left, a worker failed); None
        when it cannot tell (an upstream API): the caller counts tokens itself."""
        return None

    def problem(self) -> str | None:
        """Why it cannot take calls now (readiness), or None."""
        return None

    async def start(self) -> None:
        """Start background work (spawn workers, health checks), on the serving loop."""
        return None  # nothing to start: a default, not an abstract method

    async def aclose(self) -> None:
        """Release what it holds."""
        return None
