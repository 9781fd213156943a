"""One deployment of a route: a backend, the name it knows the model by, and what routing
learns of it as calls go by (health, calls in flight, latency, its own rpm/tpm window)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import orjson

from llm_gateway.backends.base import Backend
from llm_gateway.config.routes import CooldownConfig, DeploymentConfig
from llm_gateway.routing.health import Health
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.usage import Usage

WINDOW_SECONDS = 60.0  # rpm and tpm count the last minute
LATENCY_WEIGHT = 0.3  # the EWMA's weight for the newest time to first byte


class Deployment:
    def __init__(self, name: str, cfg: DeploymentConfig, backend: Backend,
                 cooldown: CooldownConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.backend = backend
        self.upstream_model = cfg.upstream_model  # None: the name the client asked for
        self.weight = cfg.weight
        self.priority = cfg.priority
        self.rpm = cfg.rpm
        self.tpm = cfg.tpm
        self.health = Health(cooldown, clock)
        self.inflight = 0
        self.latency: float | None = None  # EWMA of seconds to the first byte; None: untried
        self._clock = clock
        self._starts: deque[float] = deque()  # call starts in the window (rpm)
        self._tokens: deque[tuple[float, int]] = deque()  # tokens used in the window (tpm)
        self._token_sum = 0

    # -- availability ----------------------------------------------------------------------
    def available(self) -> bool:
        return self.health.available() and not self.at_limit()

    def at_limit(self) -> bool:
        """Its own rpm or tpm is used up for this minute: skipped, not cooled down."""
        if self.rpm is None and self.tpm is None:
            return False
        self._expire(self._clock() - WINDOW_SECONDS)
        return ((self.rpm is not None and len(self._starts) >= self.rpm)
                or (self.tpm is not None and self._token_sum >= self.tpm))

    def _expire(self, before: float) -> None:
        starts = self._starts
        while starts and starts[0] < before:
            starts.popleft()
        tokens = self._tokens
        while tokens and tokens[0][0] < before:
            self._token_sum -= tokens.popleft()[1]

    # -- a call ----------------------------------------------------------------------------
    def started(self) -> float:
        self.inflight += 1
        now = self._clock()
        if self.rpm is not None:
            self._starts.append(now)
        return now

    def answered(self, started: float) -> None:
        """Its first byte (a whole answer, or a stream's first block) came."""
        seconds = self._clock() - started
        old = self.latency
        self.latency = seconds if old is None else old + LATENCY_WEIGHT * (seconds - old)

    def done(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    def used(self, usage: Usage | None) -> None:
        if usage is not None and self.tpm is not None and usage.total:
            self._tokens.append((self._clock(), usage.total))
            self._token_sum += usage.total

    def watch(self, started: float, stream: bool) -> Observer:
        """What follows the answer: its first byte, its end, its tokens (for tpm)."""
        return _Watch(self, started, stream)

    def snapshot(self) -> dict:
        """Its state for the admin API."""
        health = self.health
        self.at_limit()  # expires the window
        return {
            "name": self.name, "backend": self.backend.name,
            "upstream_model": self.upstream_model, "weight": self.weight,
            "priority": self.priority, "state": health.state(),
            "failures": health.failures, "last_failure": health.last_reason,
            "cooldown_remaining_seconds": round(health.cooling_for(), 3),
            "inflight": self.inflight,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 1),
            "rpm": self.rpm, "tpm": self.tpm,
            "requests_last_minute": len(self._starts) if self.rpm is not None else None,
            "tokens_last_minute": self._token_sum if self.tpm is not None else None,
        }


class _Watch(Observer):
    """Seen first, with the backend's own observers: nothing it does can change the answer."""

    __slots__ = ("_counted", "_deployment", "_first", "_started")
    stage = Stage.SOURCE

    def __init__(self, deployment: Deployment, started: float, stream: bool) -> None:
        self._deployment = deployment
        self._started = started
        self._first = not stream  # a whole answer's first byte came with it
        self._counted = False

    def whole(self, status: int, body: bytes) -> None:
        deployment = self._deployment
        if deployment.tpm is not None and b'"usage"' in body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                return None
            if type(data) is dict:
                deployment.used(Usage.from_object(data.get("usage")))
                self._counted = True
        return None

    def block(self, block: Block) -> None:
        deployment = self._deployment
        if not self._first:
            self._first = True
            deployment.answered(self._started)
        if deployment.tpm is not None and not self._counted and b'"usage"' in block.raw:
            for event in block.events:
                usage = event.usage
                if usage is not None:
                    deployment.used(usage)
                    self._counted = True
                    break
        return None

    def ended(self, end: End) -> None:
        self._deployment.done()
