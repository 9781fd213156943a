"""Attributes each request's usage: a ledger record, and the admission settled with it.

`prepare` makes streams report their usage (metering), `track` has the result metered so that
when it is over (a body at once, a stream at its end, however it ended) one `UsageRecord` is
written to the ledger and the admission is settled exactly once with what was charged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any

from llm_gateway.accounting import metering
from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.metering import Metered
from llm_gateway.accounting.prices import Prices
from llm_gateway.accounting.record import GROUPED, UsageRecord, own_attempts
from llm_gateway.accounting.sources import UsageSource
from llm_gateway.admission import Admission
from llm_gateway.call import Call, Result
from llm_gateway.config import Config
from llm_gateway.errors import GatewayError


class Accountant:
    def __init__(self, config: Config, env: Mapping[str, str],
                 backends: Mapping[str, UsageSource], metrics: Any = None) -> None:
        self.config = config
        self.backends = backends  # to ask a local worker what a cut stream had produced
        self.metrics = metrics  # metrics.registry.GatewayMetrics (ledger queue), or None
        # Told of each record with a cost or saved tokens (the metrics recorder; it owns the
        # bounded label values, so the accountant need not know them).
        self.on_record: Callable[[UsageRecord], None] | None = None
        self.ledger: Ledger | None = None  # once started, when accounting is enabled
        self.prices = Prices(config.accounting.prices)
        self.charge_grouped = config.accounting.charge_grouped
        self._counting: set[asyncio.Task] = set()  # cut streams being counted

    async def start(self, db: Any) -> None:
        if self.config.accounting.enabled and db is not None:
            self.ledger = Ledger.from_config(db, self.config, metrics=self.metrics)
            await self.ledger.start()

    def prepare(self, call: Call) -> None:
        """Before the backend call: ask for stream usage the client did not ask for."""
        metering.ask_for_usage(call)

    def track(self, call: Call, admission: Admission, result: Result, started: float,
              also: Callable[[Metered], None] | None = None) -> Result:
        """The result as the client will get it; its record is written when it is over, and
        ``also`` (the request's metrics record) gets the same measure."""
        settled = False

        def on_done(metered: Metered) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            if also is not None:
                also(metered)
            try:
                rec = self._record(call, result, metered, started)
            except Exception:
                admission.settle(0, 0.0)
                raise  # metering logs it
            self.keep(rec, admission)

        result = metering.meter(call, result, self.backends, on_done, tasks=self._counting)
        return result

    def keep(self, rec: UsageRecord, admission: Admission) -> None:
        """A call is over: settle its admission with what `rec` charged, and record it (the
        model endpoints' records come from `track`, the passthrough's are made there)."""
        admission.settle(rec.total_tokens if rec.charged else 0, rec.cost)
        if self.ledger is not None:
            self.ledger.record(rec)
        if self.on_record is not None and (rec.cost or rec.saved_tokens):
            self.on_record(rec)  # the cost and tokens-saved metrics

    def failed(self, call: Call, admission: Admission, error: GatewayError,
               started: float) -> None:
        """The call ended in an error before any result."""
        admission.settle(0, 0.0)
        if self.ledger is None:
            return
        ended = perf_counter()
        outcome = ("timeout" if error.status == 504 else
                   "upstream_error" if error.status in (502, 503) else "error")
        principal = call.principal
        self.ledger.record(UsageRecord(
            request_id=call.request_id, time=time.time() - (ended - started),
            key_id=getattr(principal, "key_id", None), team=getattr(principal, "team", None),
            model=call.model, served_model=call.target_model or call.model,
            backend=error.backend or "",
            latency_ms=(ended - started) * 1000, status=error.status, outcome=outcome,
            charged=False, endpoint=call.endpoint, method="POST", grouping=error.grouping,
            attempts=1 if error.attempts is None else error.attempts))

    def _record(self, call: Call, result: Result, metered: Metered,
                started: float) -> UsageRecord:
        usage = metered.usage
        served = call.target_model or call.model
        grouped = result.grouping in GROUPED
        charged = not grouped or self.charge_grouped
        backend = self.backends.get(result.backend)
        if backend is not None and backend.local:
            # Local models are free unless priced by their own name: an alias that an
            # upstream glob (gpt-*) matches must not price a local answer as OpenAI's.
            cost = self.prices.cost(usage, served) if charged else 0.0
        else:
            cost = self.prices.cost(usage, served, call.model) if charged else 0.0
        principal = call.principal
        first = metered.first_token_at
        return UsageRecord(
            request_id=call.request_id,
            time=time.time() - (perf_counter() - started),
            key_id=getattr(principal, "key_id", None),
            team=getattr(principal, "team", None),
            model=call.model, served_model=served, backend=result.backend,
            prompt_tokens=usage.prompt if usage else 0,
            completion_tokens=usage.completion if usage else 0,
            cached_tokens=usage.cached if usage else 0,
            cost=cost,
            latency_ms=(metered.ended_at - started) * 1000,
            ttft_ms=None if first is None else (first - started) * 1000,
            status=metered.status, outcome=metered.outcome, partial=metered.partial,
            grouping=result.grouping,
            saved_tokens=usage.total if usage is not None and grouped else 0,
            charged=charged, endpoint=call.endpoint, method="POST",
            # Where the answer came from, like `backend`: a coalesced answer has its leader's
            # deployment and fallback, a cached one those of the answer cached.
            deployment=result.deployment, attempts=own_attempts(result),
            fallback_reason=None if result.fallback is None else result.fallback[0])

    async def aclose(self) -> None:
        await metering.drain(self._counting)  # cut streams still being counted
        if self.ledger is not None:
            await self.ledger.aclose()
