"""Sums kept in plain dicts and lists, applied to the Prometheus metrics in batches.

A prometheus_client increment takes a lock (and, with several processes, writes a memory-
mapped file), and a histogram observation costs two of them plus a scan of the buckets; a
request records a dozen such values. Here a request costs one dict lookup and a few list
additions, and `Tally.flush` applies what piled up, once per label set. The recorder flushes
before each scrape and within a second of a request (so the other processes' share of a
multi-process scrape is at most that old). Everything runs on the event loop: no locks.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from llm_gateway.metrics.registry import (
    DURATION_BUCKETS,
    OVERHEAD_BUCKETS,
    TTFT_BUCKETS,
    GatewayMetrics,
)
from llm_gateway.usage import Usage

Labels = tuple[str, ...]


class Children:
    """A labelled metric's children, resolved once per label tuple (`.labels()` validates and
    locks on every call). Small, because every label value is bounded."""

    __slots__ = ("_cache", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._cache: dict[Labels, Any] = {}

    def __call__(self, labels: Labels) -> Any:
        if not labels:
            return self.metric
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self.metric.labels(*labels)
        return child


class CounterTally:
    __slots__ = ("children", "pending")

    def __init__(self, metric: Any) -> None:
        self.children = Children(metric)
        self.pending: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float = 1.0) -> None:
        self.pending[labels] = self.pending.get(labels, 0.0) + amount

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for labels, amount in pending.items():
            self.children(labels).inc(amount)


def add_observations(child: Any, counts: list[float], total: float) -> None:
    """Add many observations to a histogram child: per-bucket counts and their sum.

    prometheus_client keeps one value per bucket (made cumulative when collected) and one for
    the sum, and has no public way to add observations in bulk; tests/metrics/test_tally.py
    checks that this equals observing them one by one.
    """
    for value, count in zip(child._buckets, counts, strict=True):
        if count:
            value.inc(count)
    child._sum.inc(total)


class RequestTally:
    """What finished requests recorded, summed per (model, backend, team, status) in one list.

    One dict lookup per request feeds five metrics; the list holds the request count, the
    prompt, completion and cached tokens, then for each of duration, time to first token and
    overhead its bucket counts followed by its sum.
    """

    __slots__ = ("_dur", "_over", "_ttft", "_width", "metrics", "pending")

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        # (where its counts start in a row, its bucket bounds)
        self._dur: tuple[int, tuple[float, ...]] = (4, (*DURATION_BUCKETS, float("inf")))
        self._ttft: tuple[int, tuple[float, ...]] = (
            self._dur[0] + len(self._dur[1]) + 1, (*TTFT_BUCKETS, float("inf")))
        self._over = (self._ttft[0] + len(self._ttft[1]) + 1, (*OVERHEAD_BUCKETS, float("inf")))
        self._width = self._over[0] + len(self._over[1]) + 1
        self.pending: dict[Labels, list[float]] = {}

    def add(self, key: Labels, duration: float, ttft: float | None, overhead: float | None,
            usage: Usage | None) -> None:
        acc = self.pending.get(key)
        if acc is None:
            acc = self.pending[key] = [0.0] * self._width
        acc[0] += 1
        if usage is not None:
            acc[1] += usage.prompt
            acc[2] += usage.completion
            acc[3] += usage.cached
        start, bounds = self._dur
        acc[start + bisect_left(bounds, duration)] += 1  # the first bucket with value <= bound
        acc[start + len(bounds)] += duration
        if ttft is not None:
            start, bounds = self._ttft
            acc[start + bisect_left(bounds, ttft)] += 1
            acc[start + len(bounds)] += ttft
        if overhead is not None:
            start, bounds = self._over
            acc[start + bisect_left(bounds, overhead)] += 1
            acc[start + len(bounds)] += overhead

    def flush(self, children: dict[str, Children]) -> None:
        pending, self.pending = self.pending, {}
        for key, acc in pending.items():
            model, backend, team, _ = key
            children["requests"](key).inc(acc[0])
            for kind, tokens in (("prompt", acc[1]), ("completion", acc[2]), ("cached", acc[3])):
                if tokens:
                    children["tokens"]((model, team, kind)).inc(tokens)
            for name, (start, bounds), labels in (("duration", self._dur, (model, backend)),
                                                  ("ttft", self._ttft, (model, backend)),
                                                  ("overhead", self._over, ())):
                counts = acc[start : start + len(bounds)]
                if any(counts):
                    add_observations(children[name](labels), counts, acc[start + len(bounds)])


class GaugeTally:
    """Levels (requests in flight): kept here, written to the gauge at each flush."""

    __slots__ = ("changed", "children", "levels")

    def __init__(self, metric: Any) -> None:
        self.children = Children(metric)
        self.levels: dict[Labels, float] = {}
        self.changed = False

    def add(self, labels: Labels, amount: float) -> None:
        self.levels[labels] = self.levels.get(labels, 0.0) + amount
        self.changed = True

    def flush(self) -> None:
        if self.changed:
            self.changed = False
            for labels, level in self.levels.items():
                self.children(labels).set(level)


class Tally:
    """The sums the request path adds to; `flush` applies them all to the metrics."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        m = self.metrics = metrics
        self.requests = RequestTally(m)
        self.backend_errors = CounterTally(m.backend_errors)
        self.inflight = GaugeTally(m.inflight)
        self._children = {"requests": Children(m.requests), "tokens": Children(m.tokens),
                          "duration": Children(m.duration), "ttft": Children(m.ttft),
                          "overhead": Children(m.overhead)}

    def flush(self) -> None:
        self.requests.flush(self._children)
        self.backend_errors.flush()
        self.inflight.flush()
