"""What the request path calls to be measured: one `RequestRecord` per request, finished once.

The edge starts a record when a request arrives and finishes it when the response is over
(for a stream: its last block sent, or the client gone), so metrics and the request log line
are written in one place, once. In between, the dispatcher times the backend call through
`RequestRecord.complete`; what the answer produced (usage, first token, outcome) comes from
the meter that the ledger reads too (`RequestRecord.metered`), so a stream cut short is counted
the same in the metrics, the log line and the ledger. A record whose usage is still being
counted (a cut stream: the worker is asked, or tiktoken counts) is finished when it arrives.

Overhead, the gateway's own time, is measured as (arrival -> backend call start) +
(backend answer -> our response start). For a stream the backend "answers" with its headers;
relaying the events afterwards is not counted (it cannot be told apart cheaply from waiting
for the backend).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import perf_counter
from typing import Any

from llm_gateway.accounting.metering import Metered
from llm_gateway.accounting.record import UsageRecord, own_attempts
from llm_gateway.call import Call, Result
from llm_gateway.config import Config
from llm_gateway.errors import GatewayError
from llm_gateway.metrics.access_log import AccessLog
from llm_gateway.metrics.registry import (
    NONE,
    Bounded,
    Capped,
    GatewayMetrics,
    Listing,
    ModelLabel,
    backend_error_code,
    backend_error_status,
)
from llm_gateway.metrics.tally import Tally
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import Observer, Stage
from llm_gateway.usage import Usage

log = logging.getLogger(__name__)

# Probes and scrapes are neither counted nor logged: they would drown the traffic.
UNRECORDED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_CLIENT_GONE = 499  # nothing was sent: the client left first (nginx's convention)
FLUSH_SECONDS = 1.0  # a finished request reaches the metrics within this, or at a scrape
# How long a finished request's line waits for the meter's report (a cut stream's tokens being
# counted: a worker asked, tiktoken); past it, the line is written with what it has. No report
# comes at all for an answer whose end the meter was never shown (a failure between the
# backend's answer and its relay): its request still gets its one line.
METER_WAIT_SECONDS = 30.0
BATCH = 256  # ... or once this many are waiting


class RequestRecord:
    """What one request did, filled in along the path; finished by `Recorder.finish`."""

    __slots__ = (
        "attempts", "backend", "backend_end", "backend_start", "body", "call", "deadline",
        "deployment", "ended", "fallback", "first_token_at", "inflight", "measured", "metering",
        "method", "model", "path", "recorder", "request_id", "response_start", "started",
        "status", "stream_error", "team", "trace", "usage", "waiting",
    )

    def __init__(self, recorder: Recorder, request_id: str, method: str, path: str) -> None:
        self.started = perf_counter()
        self.recorder = recorder
        self.request_id = request_id
        self.method = method
        self.path = path
        self.call: Call | None = None
        self.team: str | None = None  # set by auth, once it exists
        self.backend: str | None = None
        self.backend_start = 0.0
        self.backend_end = 0.0
        self.response_start = 0.0
        self.status = 0
        self.inflight: tuple[str, ...] | None = None  # the in-flight count it is part of
        self.model: str | None = None  # the model asked for, kept once `call` is let go
        self.ended = 0.0
        # What the answer produced, from the meter (accounting/metering.py).
        self.usage: Usage | None = None
        self.first_token_at: float | None = None
        self.stream_error = False
        self.metering = False  # a meter will report what the answer produced
        self.measured = False  # ... and it has
        self.waiting = False  # finished, but its usage is still being counted
        self.deadline: asyncio.TimerHandle | None = None  # ... at most until then
        self.body: list[bytes] | None = None  # the answer as sent (server.log_bodies)
        # Where the answer came from (routing), as the ledger records it (`routed`).
        self.deployment: str | None = None
        self.attempts = 1
        self.fallback: tuple[str, str] | None = None
        # The request span's (trace id, span id), read when the line is written (tracing.enabled)
        self.trace: Callable[[], tuple[str, str] | None] | None = None

    def enter(self, backend: str) -> None:
        """A backend call starts: label it, count it in flight, start the backend clock."""
        self.backend = backend
        if not self.backend_start:
            self.backend_start = perf_counter()
        tally = self.recorder.tally
        if tally is not None:
            if self.inflight is not None:
                tally.inflight.add(self.inflight, -1)  # a spill-over: the first one is done
            self.inflight = (backend,)
            tally.inflight.add(self.inflight, 1)

    def leave(self) -> None:
        self.backend_end = perf_counter()

    async def complete(self, backend: str, answer: Awaitable[Result],
                       routed: bool = False) -> Result:
        """``answer`` (the backend's `complete`, not yet awaited), timed, with its failures
        counted; `routed`: a route of deployments, whose every attempt has counted its own
        (routing/events.py), the last one too."""
        self.enter(backend)
        try:
            result = await answer
        except GatewayError as exc:
            self.leave()
            code = None if routed else backend_error_code(exc)
            if code is not None:
                self.recorder.backend_error(backend, code)
            raise
        self.leave()
        if result.spilled_from is not None:  # its workers were full: a 429 of that backend
            self.recorder.backend_error(result.spilled_from, "429")
            backend = result.backend or backend
            self.enter(backend)  # what answered takes the in-flight count
        elif result.backend and result.backend != backend:  # another deployment answered
            backend = result.backend
            self.enter(backend)
        if not routed and backend_error_status(result.status):
            self.recorder.backend_error(backend, str(result.status))
        return result

    def responded(self, status: int) -> None:
        self.status = status
        self.response_start = perf_counter()

    def metered(self, metered: Metered) -> None:
        """What the answer produced (the meter's report, the ledger's too)."""
        self.usage = metered.usage
        self.first_token_at = metered.first_token_at
        self.stream_error = metered.stream_error
        self.measured = True
        if self.waiting:
            self.waiting = False
            if self.deadline is not None:
                self.deadline.cancel()
            self.recorder.finish(self)

    def routed(self, result: Result) -> None:
        """The deployment, attempts and fallback of the answer the client gets (grouping's
        included), counted as in its ledger record."""
        self.deployment = result.deployment
        self.attempts = own_attempts(result)
        self.fallback = result.fallback

    def raised(self, error: GatewayError) -> None:
        """The call ended in an error: the attempts routing made for it, as the ledger has."""
        if error.attempts is not None:
            self.attempts = error.attempts

    def copy_of_answer(self, result: Result) -> None:
        """Keep the answer as sent, for the log line (server.log_bodies)."""
        self.body = []
        result.observe(_Copy(self.body))

    def let_go(self) -> None:
        """Keep only what the metrics need while waiting for the batch: not the request body."""
        if self.call is not None:
            self.model = self.call.model
            self.call = None

    def overhead(self) -> float | None:
        if not self.backend_start or self.response_start < self.backend_end:
            return None
        return (self.backend_start - self.started) + (self.response_start - self.backend_end)


class Recorder:
    """Starts and finishes request records; finished ones are measured in batches.

    Finishing a request only notes it: reading its usage and adding it to the metrics happens
    in `flush`, for every request finished since the last one, within FLUSH_SECONDS, before a
    scrape and at shutdown. Done per request, in between everything else a request does, the
    same work costs about three times as much (measured in bench/overhead: cold caches).
    """

    __slots__ = ("_finished", "_timer", "access", "metrics", "models", "tally", "teams")

    def __init__(self, metrics: GatewayMetrics | None, models: ModelLabel, teams: Bounded | Capped,
                 access: AccessLog) -> None:
        self.metrics = metrics
        self.tally = Tally(metrics) if metrics is not None else None
        self.models = models
        self.teams = teams
        self.access = access
        self._finished: list[RequestRecord] = []
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def build(cls, config: Config, exact_models: Iterable[str], catalog: Listing) -> Recorder:
        """``exact_models``: the routes' exact names and aliases (labelled as themselves)."""
        return cls(
            GatewayMetrics() if config.metrics.enabled else None,
            ModelLabel(exact_models, catalog),
            Capped(),
            AccessLog(config.server.log_bodies),
        )

    def start(self, scope: Mapping[str, Any], request_id: str) -> RequestRecord | None:
        """A record for this request, or None when nothing would be recorded."""
        if self.metrics is None and not self.access.enabled():
            return None
        if scope["path"] in UNRECORDED_PATHS:
            return None
        return RequestRecord(self, request_id, scope["method"], scope["path"])

    def account(self, rec: UsageRecord) -> None:
        """A usage record with a cost or tokens saved by grouping: add them to the metrics."""
        metrics = self.metrics
        if metrics is None:
            return
        team = self.teams(rec.team)
        if rec.cost:
            metrics.cost.labels(self.models(rec.model), team).inc(rec.cost)
        if rec.saved_tokens:
            metrics.tokens_saved.labels(team).inc(rec.saved_tokens)

    def backend_error(self, backend: str, code: str) -> None:
        if self.tally is not None:
            self.tally.backend_errors.add((backend, code))

    def finish(self, r: RequestRecord) -> None:
        """The request is over: write its log line now, its metrics at the next flush (once
        its usage is known, for an answer still being counted)."""
        try:
            if not r.ended:
                r.ended = perf_counter()
            if r.metering and not r.measured:
                r.waiting = True  # RequestRecord.metered finishes it, or the deadline does
                r.deadline = asyncio.get_running_loop().call_later(
                    METER_WAIT_SECONDS, self._unmetered, r)
                return
            if self.access.enabled():
                self.access.write(r, self.teams(r.team), r.ended, r.usage)
            tally = self.tally
            if tally is None:
                return
            if r.inflight is not None:
                tally.inflight.add(r.inflight, -1)
                r.inflight = None
            r.let_go()
            self._finished.append(r)
            if len(self._finished) >= BATCH:
                self.flush()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
        except Exception:
            log.exception("could not record request %s", r.request_id)

    def _unmetered(self, r: RequestRecord) -> None:
        """No report came in time: the line and the metrics with what the request has (a
        report coming later is not counted again)."""
        if r.waiting:
            r.waiting = False
            r.metering = False
            self.finish(r)

    def flush(self) -> None:
        """Add the requests finished since the last flush to the metrics."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tally = self.tally
        if tally is None:
            return
        finished, self._finished = self._finished, []
        for r in finished:
            try:
                self._measure(tally, r)
            except Exception:
                log.exception("could not measure request %s", r.request_id)
        tally.flush()

    def _measure(self, tally: Tally, r: RequestRecord) -> None:
        backend = r.backend or NONE
        ttft = None
        if r.first_token_at is not None:
            ttft = r.first_token_at - r.started
        if r.stream_error:
            tally.backend_errors.add((backend, "stream_error"))
        model = self.models(r.model) if r.model is not None else NONE
        key = (model, backend, self.teams(r.team), str(r.status or _CLIENT_GONE))
        tally.requests.add(key, r.ended - r.started, ttft, r.overhead(), r.usage)


class _Copy(Observer):
    """The answer as the client got it, for the request log."""

    stage = Stage.LOG
    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def whole(self, status: int, body: bytes) -> None:
        self.parts.append(body)

    def block(self, block: Block) -> None:
        self.parts.append(block.out())
