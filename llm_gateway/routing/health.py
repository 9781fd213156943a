"""A deployment's health: healthy, cooling down after failures, or half-open (one probe call).

A failure (429, 5xx, a timeout: see failures.py) in a row of `failures` starts a cooldown of
`base_seconds`, doubling with each further failure up to `max_seconds`; a 429's Retry-After
lengthens it (up to `max_retry_after_seconds`). When the cooldown is over, one call is let
through as a probe while the others still skip the deployment: its success makes the
deployment healthy again, its failure starts the next, longer cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_gateway.config.routes import CooldownConfig

HEALTHY = "healthy"
COOLING = "cooling"
HALF_OPEN = "half_open"
STATE_VALUES = {HEALTHY: 0, COOLING: 1, HALF_OPEN: 2}  # the metric's value for each state


class Health:
    __slots__ = ("_cfg", "_clock", "failures", "last_reason", "probing", "until")

    def __init__(self, cfg: CooldownConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._clock = clock
        self.failures = 0  # failures in a row
        self.until = 0.0  # cooling until then (clock time); 0: not cooling
        self.probing = False  # a probe call is out
        self.last_reason: str | None = None  # why it last failed (rate_limit, error)

    def state(self) -> str:
        if self.probing:
            return HALF_OPEN
        return COOLING if self.until else HEALTHY

    def available(self) -> bool:
        """Whether a call may go to it now (as a probe, when its cooldown is over)."""
        if not self.until:
            return True
        return not self.probing and self._clock() >= self.until

    def cooling_for(self) -> float:
        """Seconds left of its cooldown (0 when healthy or ready for a probe)."""
        return max(0.0, self.until - self._clock()) if self.until else 0.0

    def begin(self) -> bool:
        """A call goes to it; True when that call is the probe of a cooldown that is over."""
        if self.until and not self.probing:
            self.probing = True
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.probing = False
        self.last_reason = None

    def failed(self, reason: str, retry_after: float | None = None) -> bool:
        """A call to it failed; True when this starts (or lengthens) a cooldown."""
        cfg = self._cfg
        self.failures += 1
        self.probing = False
        self.last_reason = reason
        if self.failures < cfg.failures:
            return False
        period = min(cfg.max_seconds, cfg.base_seconds * 2 ** (self.failures - cfg.failures))
        if retry_after is not None:
            period = max(period, min(retry_after, cfg.max_retry_after_seconds))
        self.until = self._clock() + period
        return True

    def ended_unjudged(self) -> None:
        """A probe that ended without telling (the caller's own error, a cancelled call):
        the next call probes again."""
        self.probing = False
