"""Budgets: tokens and cost per key or team over a UTC day, a UTC month, or for ever.

Reserve-then-settle: admitting a call reserves its maximum (estimated prompt + allowed
completion, and their price); a call is refused once spent + reserved has reached the budget.
So N concurrent calls against a nearly spent budget overshoot it by at most one reservation:
each admission sees every reservation before it. Settling releases the reservation and adds
what the call really cost.

The spend before this process started comes from the ledger (`Ledger.spent`), read once per
scope and period, on first use; from then on settled calls are added here (the ledger gets
the same records, but reading it back on every call would be both slow and, while its writer
batches, behind).
"""

from __future__ import annotations

import asyncio
import logging
import time
from calendar import timegm
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from llm_gateway.config.access import BudgetConfig

log = logging.getLogger(__name__)

RESEED_SECONDS = 30.0  # after the ledger failed to answer, ask it again this much later


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget a call is reserved against, in the current period."""

    scope: str  # "k:<key id>" or "t:<team>"
    key_id: str | None  # what to ask the ledger for (one of the two)
    team: str | None
    tokens: int | None  # the budget's limits (None: not limited in that unit)
    cost: float | None
    period: str  # the period's id: "d2025-03-09", "m2025-03", "total"
    start: float  # epoch seconds where the period began
    end: float | None  # where it ends (None: never)

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.period}"

    def reached(self, tokens: float, cost: float) -> bool:
        """Whether spent + reserved (`tokens`, `cost`) leaves nothing to admit a call with."""
        return ((self.tokens is not None and tokens >= self.tokens)
                or (self.cost is not None and cost >= self.cost))


def period_bounds(period: str, now: float) -> tuple[str, float, float | None]:
    """(id, start, end) of the UTC calendar period containing `now`."""
    if period == "total":
        return "total", 0.0, None
    t = time.gmtime(now)
    if period == "day":
        start = timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return f"d{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", float(start), start + 86400.0
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    start = timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    end = timegm((year, month, 1, 0, 0, 0))
    return f"m{t.tm_year:04d}-{t.tm_mon:02d}", float(start), float(end)


def charge(scope: str, config: BudgetConfig, now: float, *, key_id: str | None = None,
           team: str | None = None) -> Charge:
    period, start, end = period_bounds(config.period, now)
    return Charge(scope, key_id, team, config.tokens, config.cost, period, start, end)


async def spent_or_zero(ledger: Any, c: Charge) -> tuple[int, float] | None:
    """What the ledger has recorded in this charge's period; None when it could not answer
    (its database is down: the caller counts from 0 for a while, then asks again)."""
    if ledger is None:
        return 0, 0.0
    try:
        tokens, cost = await ledger.spent(key_id=c.key_id, team=c.team, since=c.start)
    except Exception as exc:
        log.warning("budget %s: could not read the spend so far from the ledger (%s); "
                    "counting from 0 until it answers", c.scope, exc)
        return None
    return int(tokens), float(cost)


class SingleFlight:
    """One run of a coroutine per key at a time, awaited by every caller that asks meanwhile
    (50 concurrent first calls read the ledger once, not 50 times)."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[Any]] = {}

    async def run(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        pending = self._running.get(key)
        if pending is None:
            pending = self._running[key] = asyncio.ensure_future(make())
            pending.add_done_callback(lambda _: self._running.pop(key, None))
        # Shielded: a caller that gives up does not cancel the others' read.
        return await asyncio.shield(pending)


class _Tally:
    __slots__ = ("period", "reseed_at", "reserved_cost", "reserved_tokens", "spent_cost",
                 "spent_tokens")

    def __init__(self, period: str, tokens: int, cost: float, reseed_at: float | None) -> None:
        self.period = period
        self.spent_tokens = tokens
        self.spent_cost = cost
        self.reserved_tokens = 0
        self.reserved_cost = 0.0
        self.reseed_at = reseed_at  # set when the ledger could not be read: try again then


class MemoryBudgets:
    """Budgets for one replica (or for every replica while Redis is unreachable).

    One tally per scope, for its current period only: a new period starts a new tally, seeded
    from the ledger, and the old one is dropped.
    """

    def __init__(self, ledger: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock
        self._tallies: dict[str, _Tally] = {}
        self._seeding = SingleFlight()

    async def ready(self, charges: list[Charge]) -> None:
        """Make sure every charge's tally exists for its period (one ledger read each, shared
        by the calls that arrive meanwhile)."""
        for c in charges:
            tally = self._tallies.get(c.scope)
            if tally is not None and tally.period == c.period and (
                    tally.reseed_at is None or tally.reseed_at > self.clock()):
                continue
            await self._seeding.run(c.key, partial(self._seed, c))

    async def _seed(self, c: Charge) -> None:
        reseed_at = None
        spent = await spent_or_zero(self.ledger, c)
        if spent is None:
            tokens, cost, reseed_at = 0, 0.0, self.clock() + RESEED_SECONDS
        else:
            tokens, cost = spent
        tally = self._tallies.get(c.scope)
        if tally is not None and tally.period == c.period:
            # A retry after a failed read: keep what was counted here meanwhile, unless the
            # ledger knows of more (it has other replicas' records too).
            tally.spent_tokens = max(tally.spent_tokens, tokens)
            tally.spent_cost = max(tally.spent_cost, cost)
            tally.reseed_at = reseed_at
        else:
            self._tallies[c.scope] = _Tally(c.period, tokens, cost, reseed_at)

    def refused(self, charges: list[Charge]) -> Charge | None:
        """The first charge whose budget is used up (spent + reserved), or None. Call after
        `ready`, with no await between this, `reserve` and the rate limits' take."""
        for c in charges:
            t = self._tallies[c.scope]
            if c.reached(t.spent_tokens + t.reserved_tokens, t.spent_cost + t.reserved_cost):
                return c
        return None

    def reserve(self, charges: list[Charge], tokens: int, cost: float) -> None:
        for c in charges:
            t = self._tallies[c.scope]
            t.reserved_tokens += tokens
            t.reserved_cost += cost

    def settle(self, charges: list[Charge], reserved: tuple[int, float],
               used: tuple[int, float]) -> None:
        """Release a reservation and add what the call cost. A reservation from a period that
        has since ended was dropped with its tally; the cost then counts in the new one."""
        for c in charges:
            t = self._tallies.get(c.scope)
            if t is None:
                continue  # not seeded yet: the ledger will have this call when it is
            if t.period == c.period:
                t.reserved_tokens = max(0, t.reserved_tokens - reserved[0])
                t.reserved_cost = max(0.0, t.reserved_cost - reserved[1])
            t.spent_tokens += used[0]
            t.spent_cost += used[1]

    def spent(self, c: Charge) -> tuple[int, float] | None:
        """Settled spend in the charge's scope and period (None: not seeded)."""
        t = self._tallies.get(c.scope)
        if t is None or t.period != c.period:
            return None
        return t.spent_tokens, t.spent_cost
