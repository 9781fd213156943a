"""What accounting asks of a backend. Backends sit above accounting, so accounting names only
this protocol; every `backends.base.Backend` satisfies it (its defaults included)."""

from __future__ import annotations

from typing import Protocol

from llm_gateway.usage import Usage


class UsageSource(Protocol):
    @property
    def local(self) -> bool:
        """Served on our own machines: priced by the served model's own name only."""
        ...

    async def usage_of(self, call_id: str) -> Usage | None:
        """What a call (its `Call.call_id`) whose stream was cut short used, by the backend's
        count; None when it cannot tell."""
        ...
