"""The parts of deployment routing, each alone: health and cooldown on a fake clock, the
strategies' orders, what counts as a failure."""

from __future__ import annotations

import random
from collections import Counter

from llm_gateway.backends.base import Backend
from llm_gateway.call import Call, Result
from llm_gateway.config.routes import CooldownConfig, DeploymentConfig
from llm_gateway.errors import InvalidRequest, UpstreamTimeout
from llm_gateway.routing.deployment import Deployment
from llm_gateway.routing.failures import of_error, of_result, retry_after
from llm_gateway.routing.health import Health
from llm_gateway.routing.strategies import STRATEGIES
from llm_gateway.usage import Usage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Null(Backend):
    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, call: Call) -> Result:
        raise AssertionError("not called")


def test_cooldown_doubles_then_one_probe_then_healthy() -> None:
    clock = Clock()
    health = Health(CooldownConfig(base_seconds=2, max_seconds=5), clock)
    assert health.failed("error")
    assert health.state() == "cooling" and not health.available()
    clock.now += 2
    assert health.available() and health.begin()  # the probe
    assert health.state() == "half_open" and not health.available()  # only one probe
    assert health.failed("error")  # the probe failed: 4 s now
    clock.now += 3.9
    assert not health.available()
    clock.now += 0.1
    assert health.begin() and health.failed("error")
    assert health.cooling_for() == 5  # capped at max_seconds
    clock.now += 5
    assert health.begin()
    health.succeeded()
    assert health.state() == "healthy" and health.failures == 0


def test_retry_after_lengthens_a_cooldown_up_to_its_cap() -> None:
    clock = Clock()
    health = Health(CooldownConfig(base_seconds=1, max_retry_after_seconds=30), clock)
    health.failed("rate_limit", retry_after=12)
    assert health.cooling_for() == 12
    health.failed("rate_limit", retry_after=3600)
    assert health.cooling_for() == 30


def test_failures_below_the_threshold_do_not_cool() -> None:
    health = Health(CooldownConfig(failures=3), Clock())
    assert not health.failed("error") and not health.failed("error")
    assert health.available()
    assert health.failed("error") and not health.available()


def test_a_probe_that_ends_unjudged_lets_the_next_call_probe() -> None:
    clock = Clock()
    health = Health(CooldownConfig(base_seconds=1), clock)
    health.failed("error")
    clock.now += 1
    assert health.begin()
    health.ended_unjudged()
    assert health.available() and health.begin()


def _deployments(*weights: float, clock: Clock | None = None) -> list[Deployment]:
    return [Deployment(f"d{i}", DeploymentConfig(backend=f"b{i}", weight=w, priority=i),
                       _Null(f"b{i}"), CooldownConfig(), clock or Clock())
            for i, w in enumerate(weights)]


def test_weighted_order_draws_first_places_by_weight() -> None:
    deployments = _deployments(1, 2, 5)
    rng = random.Random(7)
    firsts = Counter(STRATEGIES["weighted"](deployments, rng)[0].name for _ in range(8000))
    assert abs(firsts["d2"] / 8000 - 5 / 8) < 0.03
    assert abs(firsts["d1"] / 8000 - 2 / 8) < 0.03


def test_least_inflight_latency_and_priority_orders() -> None:
    a, b, c = _deployments(1, 1, 1)
    rng = random.Random(1)
    a.inflight, b.inflight, c.inflight = 3, 0, 1
    assert [d.name for d in STRATEGIES["least_inflight"]([a, b, c], rng)] == ["d1", "d2", "d0"]
    a.latency, b.latency, c.latency = 0.2, 0.5, None  # untried first: it gets measured
    assert [d.name for d in STRATEGIES["latency"]([a, b, c], rng)] == ["d2", "d0", "d1"]
    assert [d.name for d in STRATEGIES["priority"]([c, b, a], rng)] == ["d0", "d1", "d2"]


def test_rpm_and_tpm_windows_skip_a_deployment_for_a_minute() -> None:
    clock = Clock()
    d = Deployment("d", DeploymentConfig(backend="b", rpm=2, tpm=100), _Null("b"),
                   CooldownConfig(), clock)
    d.started()
    d.started()
    assert d.at_limit() and not d.available()
    clock.now += 61
    assert d.available()
    d.used(Usage(prompt=60, completion=50, total=110))
    assert d.at_limit()
    clock.now += 61
    assert not d.at_limit()


def test_latency_is_a_moving_average_of_the_first_byte() -> None:
    clock = Clock()
    d = _deployments(1, clock=clock)[0]
    started = d.started()
    clock.now += 1.0
    d.answered(started)
    started = d.started()
    clock.now += 2.0
    d.answered(started)
    assert d.latency is not None and abs(d.latency - 1.3) < 1e-9


def test_what_counts_as_a_failure() -> None:
    def result(status: int, body: bytes = b"", headers=()) -> Result:
        return Result(status=status, body=body, headers=list(headers))

    assert of_result(result(200)) is None
    assert of_result(result(400, b'{"error": {"code": "invalid_value"}}')) is None
    limited = of_result(result(429, headers=[("retry-after", "7")]))
    assert limited is not None and limited.cools and limited.retry_after == 7
    for status in (500, 503, 529, 401, 404):
        failure = of_result(result(status))
        assert failure is not None and failure.reason == "error" and failure.cools
    context = of_result(result(400, b'{"error": {"code": "context_length_exceeded"}}'))
    assert context is not None and context.reason == "context_window" and not context.cools
    azure = of_result(result(400, b'{"error": {"code": "content_filter", "innererror": '
                                  b'{"code": "ResponsibleAIPolicyViolation"}}}'))
    assert azure is not None and azure.reason == "content_policy"
    assert of_error(UpstreamTimeout("slow")) is not None
    assert of_error(InvalidRequest("yours")) is None


def test_retry_after_forms() -> None:
    assert retry_after([("Retry-After", "3")]) == 3
    assert retry_after([("retry-after", "soon")]) is None
    assert retry_after([("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]) == 0
    assert retry_after([]) is None
