"""Per-minute rate limits as GCRA (the generic cell rate algorithm), in memory.

Why GCRA rather than a sliding-window counter with sub-buckets: both slide (capacity comes
back as time passes, with none of a fixed window's 2x burst at its boundary), but GCRA keeps
one number per limit, the "theoretical arrival time" (TAT), instead of a ring of buckets.
That makes the Redis script a GET and a SET per limit, gives an exact Retry-After (the moment
the call would fit) instead of one rounded to a bucket, and makes settling a reservation
trivial: giving back unused tokens moves the TAT back by their worth. It is also how OpenAI
describes its own limits: capacity replenishes continuously, a full minute's worth may be
used at once, and `x-ratelimit-reset-*` is the time until the limit is full again.

A limit of L per window W: each unit costs T = W / L seconds of TAT; a call costing c is
admitted when max(TAT, now) + c*T - now <= W; then TAT = max(TAT, now) + c*T.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from llm_gateway.limits.headers import WindowState

WINDOW = 60.0  # seconds: every limit is per minute (rpm, tpm)
_EPSILON = 1e-9  # float slack, so L calls of cost 1 make exactly L, not L - 1


class Bucket(NamedTuple):  # a tuple: made on every admission, so made cheaply
    """One rate limit that applies to a call, and what the call takes from it."""

    id: str  # e.g. "rpm:k:key_123", "tpm:t:research", "rpm:m:gpt-4o"
    kind: str  # "requests" | "tokens"
    limit: int  # per WINDOW
    cost: int  # 1 request, or the call's estimated tokens (at most `limit`, see gate.py)


@dataclass(slots=True)
class Verdict:
    """What a call's rate limits say: admitted (and taken from every limit) or not (and
    nothing taken), each limit's state, and when to retry."""

    admitted: bool
    states: list[WindowState]
    retry_after: float = 0.0  # seconds, when refused
    refused: Bucket | None = None  # the limit that refused (the longest wait)


def gcra(tat: float, now: float, limit: int, cost: int,
         window: float = WINDOW) -> tuple[bool, float, int, float, float]:
    """One limit: (admitted, new TAT, remaining, reset, retry_after). A refusal keeps `tat`."""
    step = window / limit
    tat = max(tat, now)
    new_tat = tat + cost * step
    wait = new_tat - window - now
    if wait > _EPSILON:
        remaining = math.floor((window - (tat - now)) / step + _EPSILON)
        return False, tat, max(remaining, 0), tat - now, wait
    remaining = math.floor((window - (new_tat - now)) / step + _EPSILON)
    return True, new_tat, max(remaining, 0), new_tat - now, 0.0


def adjusted(tat: float, now: float, limit: int, delta: int, window: float = WINDOW) -> float:
    """The TAT once a settled call turned out to cost `delta` units more (or fewer) than it
    reserved. Unused units come back; a TAT in the past is an idle, full limit."""
    step = window / limit
    if delta >= 0:
        return max(tat, now) + delta * step
    return max(tat + delta * step, now)


def judge(buckets: list[Bucket], tats: list[float], now: float,
          window: float = WINDOW) -> tuple[Verdict, list[float]]:
    """All of a call's limits at once: admitted only if every one admits (so a refusal by the
    model's limit takes nothing from the key's). Returns the verdict and the TATs to store."""
    states: list[WindowState] = []
    new_tats: list[float] = []
    retry, refused = 0.0, None
    for bucket, tat in zip(buckets, tats, strict=True):
        ok, new_tat, remaining, reset, wait = gcra(tat, now, bucket.limit, bucket.cost, window)
        states.append(WindowState(bucket.kind, bucket.limit, remaining, reset))
        new_tats.append(new_tat)
        if not ok and wait > retry:
            retry, refused = wait, bucket
    if refused is not None:
        # Nothing is taken: report every limit as it stands, not as if the call had run.
        states = [_unchanged(b, t, now, window) for b, t in zip(buckets, tats, strict=True)]
        return Verdict(False, states, retry, refused), tats
    return Verdict(True, states), new_tats


def _unchanged(bucket: Bucket, tat: float, now: float, window: float) -> WindowState:
    step = window / bucket.limit
    tat = max(tat, now)
    remaining = math.floor((window - (tat - now)) / step + _EPSILON)
    return WindowState(bucket.kind, bucket.limit, max(remaining, 0), tat - now)


class MemoryWindows:
    """Rate limits for one replica. Single event loop, no awaits inside: each call is atomic.

    Idle limits (TAT in the past) are forgotten by a sweep every so often, so memory follows
    the number of recently active keys, not every key ever seen.
    """

    SWEEP_EVERY = 10_000  # calls between sweeps

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window: float = WINDOW) -> None:
        self.clock = clock
        self.window = window
        self._tats: dict[str, float] = {}
        self._calls = 0

    def take(self, buckets: list[Bucket]) -> Verdict:
        now = self.clock()
        tats = self._tats
        verdict, new_tats = judge(buckets, [tats.get(b.id, now) for b in buckets], now,
                                  self.window)
        if verdict.admitted:
            for bucket, tat in zip(buckets, new_tats, strict=True):
                tats[bucket.id] = tat
        self._calls += 1
        if self._calls >= self.SWEEP_EVERY:
            self._sweep(now)
        return verdict

    def adjust(self, corrections: list[tuple[Bucket, int]]) -> None:
        """Settle token limits: each bucket's real cost minus what was reserved."""
        now = self.clock()
        for bucket, delta in corrections:
            if delta:
                tat = self._tats.get(bucket.id, now)
                self._tats[bucket.id] = adjusted(tat, now, bucket.limit, delta, self.window)

    def _sweep(self, now: float) -> None:
        self._calls = 0
        self._tats = {k: t for k, t in self._tats.items() if t > now}
