"""The limits layer: admit a call (rate limits, budget reservation) or refuse it with a 429.

STUB: admits everything; the accounting issue's limits work replaces the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_gateway.auth.principal import Principal
from llm_gateway.call import Call
from llm_gateway.config import Config


class Admission:
    """What admitting one call reserved; settled once with what it really used."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[str, str]] | None = None) -> None:
        self.headers = headers or []  # x-ratelimit-* for the response

    def settle(self, tokens: int, cost: float) -> None:
        """The call is over and used this much (0, 0: nothing). Called exactly once; never
        blocks (any shared-store work runs in the background)."""


class Gate:
    def __init__(self, config: Config, env: Mapping[str, str]) -> None:
        self.config = config

    async def start(self, ledger: Any) -> None:
        """`ledger`: accounting's Ledger (for the spend so far in a budget period), or None."""

    async def admit(self, principal: Principal, call: Call) -> Admission:
        """Reserve the call's maximum; raises RateLimited / QuotaExceeded (429)."""
        return Admission()

    async def aclose(self) -> None:
        pass
