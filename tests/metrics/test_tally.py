"""metrics/tally.py: batched sums give exactly what observing each request would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.metrics.tally import CounterTally, GaugeTally, Tally, add_observations
from llm_gateway.usage import Usage

BUCKETS = (0.1, 1.0, 10.0)
VALUES = (0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 50.0, 0.1)


def _text(registry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_bulk_observations_equal_one_by_one():
    a, b = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("h", "h", buckets=BUCKETS, registry=a)
    bulk = Histogram("h", "h", buckets=BUCKETS, registry=b)
    for v in VALUES:
        direct.observe(v)
    counts = [sum(1 for v in VALUES if lo < v <= hi) for lo, hi in
              zip((float("-inf"), *BUCKETS), (*BUCKETS, float("inf")), strict=True)]
    add_observations(bulk, counts, sum(VALUES))
    assert _text(a) == _text(b)


def test_request_tally_feeds_five_metrics():
    direct, batched = GatewayMetrics(), GatewayMetrics()
    tally = Tally(batched)
    requests = [  # (status, duration, ttft, overhead, usage)
        ("200", 0.3, 0.05, 0.0004, Usage(10, 5, 2, 15)),
        ("200", 2.0, None, 0.002, Usage(7, 1, 0, 8)),
        ("500", 0.02, None, None, None),
        ("200", 40.0, 1.5, 0.0001, Usage(3, 300, 0, 303)),
    ]
    for status, duration, ttft, overhead, usage in requests:
        key = ("m", "b", "none", status)
        tally.requests.add(key, duration, ttft, overhead, usage)
        direct.requests.labels(*key).inc()
        direct.duration.labels("m", "b").observe(duration)
        if ttft is not None:
            direct.ttft.labels("m", "b").observe(ttft)
        if overhead is not None:
            direct.overhead.observe(overhead)
        for kind in ("prompt", "completion", "cached"):
            if usage is not None and getattr(usage, kind):
                direct.tokens.labels("m", "none", kind).inc(getattr(usage, kind))
    tally.flush()
    tally.requests.add(("m", "b", "none", "200"), 0.3, None, 0.0004, None)  # a second batch
    direct.requests.labels("m", "b", "none", "200").inc()
    direct.duration.labels("m", "b").observe(0.3)
    direct.overhead.observe(0.0004)
    tally.flush()
    assert _text(direct.registry) == _text(batched.registry)


def test_counter_and_gauge_flush():
    a, b = CollectorRegistry(), CollectorRegistry()
    direct = Counter("c", "c", ["x"], registry=a)
    counts = CounterTally(Counter("c", "c", ["x"], registry=b))
    for _ in range(3):
        direct.labels("k").inc(2)
        counts.add(("k",), 2)
    counts.flush()
    assert _text(a) == _text(b)

    a, b = CollectorRegistry(), CollectorRegistry()
    Gauge("g", "g", ["x"], registry=a).labels("k").set(1)
    levels = GaugeTally(Gauge("g", "g", ["x"], registry=b))
    for step in (1, 1, -1):
        levels.add(("k",), step)
    levels.flush()
    assert _text(a) == _text(b)
