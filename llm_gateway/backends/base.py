"""The `Backend` seam: what the router dispatches a Call to."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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
