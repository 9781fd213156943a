"""Where limits are counted: the seam between the gate and its two stores.

`MemoryStore` (one replica) and `redis_store.RedisStore` (several) answer the same two
questions: may this call run (its rate limits and budgets all at once, atomically), and
what did it really use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_gateway.limits.budgets import Charge, MemoryBudgets
from llm_gateway.limits.windows import Bucket, MemoryWindows, Verdict


class StoreUnavailable(Exception):
    """The shared store could not be reached: the gate falls back to its memory store."""


@dataclass(slots=True)
class Ticket:
    """What one admission took, to settle it later."""

    buckets: list[Bucket]  # the token limits (request limits are never given back)
    charges: list[Charge]
    tokens: int  # reserved against budgets
    cost: float
    rid: str  # the reservation's id in a shared store


@dataclass(slots=True)
class Decision:
    verdict: Verdict | None  # None: no rate limit applies
    over_budget: Charge | None = None  # the used-up budget that refused the call
    # Settled spend per charge, after this admission (None where not known), for the gauges.
    spent: list[tuple[int, float] | None] = field(default_factory=list)

    @property
    def admitted(self) -> bool:
        return self.over_budget is None and (self.verdict is None or self.verdict.admitted)


class Store(Protocol):
    async def admit(self, buckets: list[Bucket], ticket: Ticket) -> Decision: ...

    def settle(self, ticket: Ticket, tokens: int, cost: float,
               spent: Callable[[Ticket, list[tuple[int, float] | None]], None]) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """Rate limits and budgets for one replica: exact, and with no await between checking
    and taking, so concurrent calls on one event loop cannot both take the last unit."""

    def __init__(self, ledger: Any = None, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.windows = MemoryWindows(monotonic)
        self.budgets = MemoryBudgets(ledger, wall)

    async def admit(self, buckets: list[Bucket], ticket: Ticket) -> Decision:
        charges = ticket.charges
        if charges:
            await self.budgets.ready(charges)  # the only await: seeding from the ledger
            over = self.budgets.refused(charges)
            if over is not None:
                return Decision(None, over)
        verdict = self.windows.take(buckets) if buckets else None
        if verdict is not None and not verdict.admitted:
            return Decision(verdict)
        if charges:
            self.budgets.reserve(charges, ticket.tokens, ticket.cost)
        return Decision(verdict, None, [self.budgets.spent(c) for c in charges])

    def settle(self, ticket: Ticket, tokens: int, cost: float,
               spent: Callable[[Ticket, list[tuple[int, float] | None]], None]) -> None:
        if ticket.buckets:
            self.windows.adjust([(b, tokens - b.cost) for b in ticket.buckets])
        if ticket.charges:
            self.budgets.settle(ticket.charges, (ticket.tokens, ticket.cost), (tokens, cost))
            spent(ticket, [self.budgets.spent(c) for c in ticket.charges])

    async def aclose(self) -> None:
        pass
