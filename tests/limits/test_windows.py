"""GCRA rate limits in memory, on an injected clock (nothing sleeps)."""

from __future__ import annotations

import pytest

from llm_gateway.limits.windows import Bucket, MemoryWindows, adjusted, gcra


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def rpm(limit: int, scope: str = "k:a") -> Bucket:
    return Bucket(f"rpm:{scope}", "requests", limit, 1)


def test_a_full_minute_is_admitted_at_once_then_one_per_step(clock):
    windows = MemoryWindows(clock)
    for i in range(6):
        verdict = windows.take([rpm(6)])
        assert verdict.admitted
        assert verdict.states[0].remaining == 5 - i
    refused = windows.take([rpm(6)])
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(10.0)  # 60 s / 6: one request's worth
    assert refused.states[0].remaining == 0
    assert refused.states[0].reset == pytest.approx(60.0)  # full again in a minute

    clock.now += 9.9
    assert not windows.take([rpm(6)]).admitted
    clock.now += 0.1
    assert windows.take([rpm(6)]).admitted
    assert not windows.take([rpm(6)]).admitted


def test_capacity_slides_back_continuously(clock):
    windows = MemoryWindows(clock)
    for _ in range(60):
        assert windows.take([rpm(60)]).admitted
    clock.now += 30  # half a minute later, half the limit is back, no more
    admitted = sum(windows.take([rpm(60)]).admitted for _ in range(60))
    assert admitted == 30
    clock.now += 60
    verdict = windows.take([rpm(60)])
    assert verdict.states[0].remaining == 59


def test_all_limits_or_none(clock):
    windows = MemoryWindows(clock)
    key, model = rpm(5, "k:a"), rpm(2, "m:gpt")
    assert windows.take([key, model]).admitted
    assert windows.take([key, model]).admitted
    refused = windows.take([key, model])
    assert not refused.admitted and refused.refused == model
    # The model's refusal took nothing from the key: it still has 3.
    verdict = windows.take([key])
    assert verdict.admitted and verdict.states[0].remaining == 2


def test_settling_gives_unused_tokens_back_and_charges_overruns(clock):
    windows = MemoryWindows(clock)
    reserved = Bucket("tpm:k:a", "tokens", 1000, 800)
    assert windows.take([reserved]).admitted
    assert not windows.take([Bucket("tpm:k:a", "tokens", 1000, 300)]).admitted
    windows.adjust([(reserved, 100 - 800)])  # it used 100 of its 800
    verdict = windows.take([Bucket("tpm:k:a", "tokens", 1000, 900)])
    assert verdict.admitted and verdict.states[0].remaining == 0
    windows.adjust([(reserved, 600)])  # and one that used more than reserved owes it
    refused = windows.take([Bucket("tpm:k:a", "tokens", 1000, 1)])
    assert not refused.admitted
    assert refused.retry_after == pytest.approx(36.0 + 0.06)  # 601 tokens at 60/1000 s


def test_gcra_edges():
    # Exactly at the limit is admitted; float steps (60/7) do not lose the last unit.
    tat = 0.0
    for _ in range(7):
        ok, tat, *_ = gcra(tat, 0.0, 7, 1)
        assert ok
    assert not gcra(tat, 0.0, 7, 1)[0]
    # A refund never moves the TAT before now (an idle limit is full, not over-full).
    assert adjusted(10.0, 50.0, 60, -30) == 50.0
    assert adjusted(100.0, 50.0, 60, -30) == 70.0
    assert adjusted(10.0, 50.0, 60, 5) == 55.0


def test_idle_limits_are_forgotten(clock):
    windows = MemoryWindows(clock)
    windows.SWEEP_EVERY = 3
    windows.take([rpm(10, "k:a")])
    windows.take([rpm(10, "k:b")])
    clock.now += 61
    windows.take([rpm(10, "k:c")])
    assert set(windows._tats) == {"rpm:k:c"}
