"""The `Backend` seam: what the router dispatches a Call to."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from llm_gateway.accounting.usage import Usage
from llm_gateway.call import Call, Result


@runtime_checkable
class Backend(Protocol):
    """Something that answers model calls: an upstream API or a pool of local workers."""

    name: str

    async def complete(self, call: Call) -> Result:
        """Answer one call. Errors come back as a non-2xx Result or a GatewayError."""
        ...

    async def list_models(self) -> list[dict[str, Any]]:
        """The models this backend serves, as OpenAI model objects."""
        ...

    async def aclose(self) -> None: ...

    async def usage_of(self, request_id: str) -> Usage | None:
        """What an earlier call with this request id used, by the backend's own count, when
        its stream ended before reporting usage (the client left, a worker failed).

        Optional: backends that cannot tell (an upstream API) may leave it out; callers
        look it up with ``getattr`` and count tokens themselves when it is missing or None.
        """
        return None
