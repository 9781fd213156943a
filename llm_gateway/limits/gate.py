"""The limits layer: admit a call (rate limits, budget reservation) or refuse it with a 429.

Per call, the limits that apply are: the key's (`Principal.key_limits`, else
`limits.key_default`), the team's (`Principal.team_limits`), the model's (`limits.models`,
exact name or glob, counted per model name across all callers), and the key's and team's
budgets. All of them are checked and taken at once, in memory (one replica) or in Redis
(`storage.redis_url`: shared by every replica). A call with none of them costs one shared,
empty Admission and no store at all.

Redis unreachable: the gate does not refuse traffic because its bookkeeping is down (that
would turn a Redis outage into a gateway outage). It falls back to its in-memory store: each
replica then enforces every limit on its own (so N replicas admit up to N times a rate
limit, and budgets are counted per replica from the ledger), logs a warning at most every
30 s, and counts the calls in `llm_gateway_limits_degraded_total`. It tries Redis again
after a second.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from llm_gateway.accounting.prices import Prices
from llm_gateway.admission import NO_LIMITS, Admission
from llm_gateway.call import Call
from llm_gateway.config import Config
from llm_gateway.config.access import BudgetConfig, RateLimitConfig
from llm_gateway.errors import QuotaExceeded, RateLimited
from llm_gateway.limits.budgets import Charge, charge
from llm_gateway.limits.estimate import estimate
from llm_gateway.limits.headers import format_reset, ratelimit_headers, retry_headers
from llm_gateway.limits.names import NameMap
from llm_gateway.limits.store import Decision, MemoryStore, Store, StoreUnavailable, Ticket
from llm_gateway.limits.windows import Bucket
from llm_gateway.principal import Principal
from llm_gateway.usage import Usage

log = logging.getLogger(__name__)

WARN_EVERY = 30.0  # seconds between two warnings that Redis is unreachable


class Reservation(Admission):
    __slots__ = ("_gate", "_store", "_ticket")

    def __init__(self, headers: list[tuple[str, str]], gate: Gate, store: Store,
                 ticket: Ticket) -> None:
        super().__init__(headers)
        self._gate = gate
        self._store: Store | None = store
        self._ticket = ticket

    def settle(self, tokens: int, cost: float) -> None:
        store, self._store = self._store, None
        if store is None:
            return  # settled already: a second call must not give the reservation back twice
        try:
            store.settle(self._ticket, max(int(tokens), 0), max(float(cost), 0.0),
                         self._gate.spent)
        except Exception:
            log.exception("could not settle a limits reservation")


class Gate:
    def __init__(self, config: Config, env: Mapping[str, str], metrics: Any = None, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        limits = config.limits
        self._key_default = limits.key_default
        self._default_max = limits.default_max_tokens
        self._models = NameMap(limits.models) if limits.models else None
        self._prices = Prices(config.accounting.prices)
        self._monotonic = monotonic
        self._wall = wall
        self.metrics = metrics  # metrics.registry.GatewayMetrics, or None
        self._teams = frozenset(config.teams)
        self.memory = MemoryStore(None, monotonic, wall)
        self.shared: Store | None = None
        self._ids = itertools.count()
        self._id_prefix = os.urandom(6).hex()  # reservation ids unique across replicas
        self._warned_at = -WARN_EVERY

    async def start(self, ledger: Any) -> None:
        """`ledger`: accounting's Ledger (for the spend so far in a budget period), or None."""
        self.memory.budgets.ledger = ledger
        url = self.config.storage.redis_url
        if url:
            from llm_gateway.limits.redis_store import RedisStore

            store = RedisStore(url, ledger, self._monotonic)
            self.shared = store
            if not await store.ping():
                log.warning("limits: Redis at storage.redis_url does not answer; limits are "
                            "counted per replica until it does")

    def applies(self, principal: Principal) -> bool:
        """Whether any limit or budget may bear on this principal's calls."""
        return not ((principal.key_limits or self._key_default) is None
                    and principal.team_limits is None and self._models is None
                    and principal.key_budget is None and principal.team_budget is None)

    async def admit(self, principal: Principal, call: Call) -> Admission:
        """Reserve the call's maximum; raises RateLimited / QuotaExceeded (429)."""
        if not self.applies(principal):
            return NO_LIMITS  # the common case without limits: no allocation, no store
        key_limits = principal.key_limits or self._key_default
        team = principal.team
        model_limits = self._models.get(call.model) if self._models is not None else None
        key_budget = _budget(principal.key_budget)
        team_budget = _budget(principal.team_budget) if team else None
        team_limits = principal.team_limits if team else None
        if (key_limits is None and team_limits is None and model_limits is None
                and key_budget is None and team_budget is None):
            return NO_LIMITS
        return await self._admit(principal, call, (
            (f"k:{principal.key_id}", key_limits), (f"t:{team}", team_limits),
            (f"m:{call.model}", model_limits)), key_budget, team_budget)

    async def _admit(self, principal: Principal, call: Call,
                     scopes: tuple[tuple[str, RateLimitConfig | None], ...],
                     key_budget: BudgetConfig | None,
                     team_budget: BudgetConfig | None) -> Admission:
        charges: list[Charge] = []
        if key_budget is not None or team_budget is not None:
            now = self._wall()
            if key_budget is not None:
                charges.append(charge(f"k:{principal.key_id}", key_budget, now,
                                      key_id=principal.key_id))
            if team_budget is not None:
                charges.append(charge(f"t:{principal.team}", team_budget, now,
                                      team=principal.team))
        prompt = completion = 0
        if charges or any(limits is not None and limits.tpm for _, limits in scopes):
            prompt, completion = estimate(call, self._default_max)
        tokens = prompt + completion
        buckets: list[Bucket] = []
        for scope, limits in scopes:
            if limits is None:
                continue
            if limits.rpm:
                buckets.append(Bucket(f"rpm:{scope}", "requests", limits.rpm, 1))
            if limits.tpm:
                # A call larger than the whole limit is admitted when the limit is full and
                # then owes the rest (later calls wait for it), rather than never running.
                buckets.append(Bucket(f"tpm:{scope}", "tokens", limits.tpm,
                                      min(tokens, limits.tpm)))
        # The reservation's price, by the same rule as the ledger's (the name asked: routing
        # has not run yet).
        cost = self._prices.cost(Usage(prompt, completion, 0, tokens), call.model) if (
            charges) else 0.0
        ticket = Ticket([b for b in buckets if b.kind == "tokens"], charges, tokens, cost,
                        f"{self._id_prefix}.{next(self._ids)}")
        store: Store = self.memory
        if self.shared is not None:
            try:
                decision = await self.shared.admit(buckets, ticket)
                store = self.shared
            except StoreUnavailable as exc:
                self._degraded(exc)
                decision = await self.memory.admit(buckets, ticket)
        else:
            decision = await self.memory.admit(buckets, ticket)
        if not decision.admitted:
            self._refuse(principal, decision)
        self.spent(ticket, decision.spent)
        headers = ratelimit_headers(decision.verdict.states) if decision.verdict else []
        return Reservation(headers, self, store, ticket)

    def _refuse(self, principal: Principal, decision: Decision) -> None:
        over = decision.over_budget
        if self.metrics is not None:
            refused = decision.verdict.refused if decision.verdict is not None else None
            kind = "budget" if over is not None else (
                "rpm" if refused is not None and refused.kind == "requests" else "tpm")
            self.metrics.ratelimited.labels(self._team_label(principal.team), kind).inc()
        if over is not None:
            what = "key" if over.scope.startswith("k:") else f"team '{principal.team}'"
            renews = "" if over.end is None else " It renews at " + time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(over.end)) + "."
            raise QuotaExceeded(
                f"You exceeded your current quota: the budget of this {what} is used up"
                f"{_PERIODS[over.period[0]]}.{renews}",
                headers={"x-should-retry": "false"})  # the openai SDK would retry a 429
        verdict = decision.verdict
        assert verdict is not None and verdict.refused is not None
        bucket = verdict.refused
        kind = "rpm" if bucket.kind == "requests" else "tpm"
        scope = bucket.id.split(":", 1)[1]
        holder = {"k": "your key", "t": f"team '{principal.team}'",
                  "m": f"model {scope[2:]}"}[scope[0]]
        headers = dict(ratelimit_headers(verdict.states))
        headers.update(retry_headers(verdict.retry_after))
        raise RateLimited(
            f"Rate limit reached for {holder} on {bucket.kind} per min ({kind.upper()}): "
            f"Limit {bucket.limit}, Requested {bucket.cost}. "
            f"Please try again in {format_reset(verdict.retry_after)}.",
            headers=headers)

    def spent(self, ticket: Ticket, spent: list[tuple[int, float] | None]) -> None:
        """Feed the team budget gauge with what a store reports as spent."""
        metrics = self.metrics
        if metrics is None:
            return
        for c, amount in zip(ticket.charges, spent, strict=False):
            if amount is None or c.team is None:
                continue
            team = self._team_label(c.team)
            if c.tokens is not None:
                metrics.budget_remaining.labels(team, "tokens").set(c.tokens - amount[0])
            if c.cost is not None:
                metrics.budget_remaining.labels(team, "usd").set(c.cost - amount[1])

    def _team_label(self, team: str | None) -> str:
        # Bounded like every team label: configured teams by name, the rest folded.
        if team is None:
            return "none"
        return team if team in self._teams else "other"

    def _degraded(self, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.limits_degraded.inc()
        now = self._monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("limits: Redis unreachable (%s); limits are counted per replica "
                        "until it answers", exc)

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()


_PERIODS = {"d": " for today (UTC)", "m": " for this month (UTC)", "t": ""}


def _budget(config: BudgetConfig | None) -> BudgetConfig | None:
    if config is None or (config.tokens is None and config.cost is None):
        return None
    return config
