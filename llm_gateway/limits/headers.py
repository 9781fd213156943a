"""OpenAI's rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.

Clients and SDKs read these (the openai SDK honours `retry-after-ms` and `retry-after` on a
429, and `x-should-retry`), so they are written exactly as OpenAI writes them: resets in Go's
duration style ("1s", "6m0s", "20ms", "1m30.5s").
"""

from __future__ import annotations

import math
from typing import NamedTuple


class WindowState(NamedTuple):  # a tuple: made on every admission, so made cheaply
    """One rate limit as this call leaves it."""

    kind: str  # "requests" | "tokens"
    limit: int  # per minute
    remaining: int  # what could still be taken right now
    reset: float  # seconds until the limit is back to full


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI (Go's time.Duration) prints it: 20ms, 1s, 1.5s, 6m0s, 1h0m0s."""
    if seconds <= 0:
        return "0s"
    ms = math.ceil(seconds * 1000)  # rounding up: waiting that long is always enough
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def tightest(states: list[WindowState], kind: str) -> WindowState | None:
    """The limit of this kind closest to refusing (least remaining; the later reset on ties),
    which is the one a client must pace itself by."""
    best: WindowState | None = None
    for state in states:
        if state.kind != kind:
            continue
        if best is None or (state.remaining, -state.reset) < (best.remaining, -best.reset):
            best = state
    return best


def ratelimit_headers(states: list[WindowState]) -> list[tuple[str, str]]:
    """The -requests trio when a request limit applies, the -tokens trio when a token one does."""
    headers: list[tuple[str, str]] = []
    for kind in ("requests", "tokens"):
        state = tightest(states, kind)
        if state is not None:
            headers.append((f"x-ratelimit-limit-{kind}", str(state.limit)))
            headers.append((f"x-ratelimit-remaining-{kind}", str(max(state.remaining, 0))))
            headers.append((f"x-ratelimit-reset-{kind}", format_reset(state.reset)))
    return headers


def retry_headers(retry_after: float) -> list[tuple[str, str]]:
    """`Retry-After` in whole seconds (at least 1, as HTTP wants), and the exact wait in
    `retry-after-ms`, which the openai SDK prefers."""
    return [
        ("retry-after", str(max(1, math.ceil(retry_after)))),
        ("retry-after-ms", str(max(1, math.ceil(retry_after * 1000)))),
    ]
