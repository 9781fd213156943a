"""Whether an upstream looks healthy, judged from the calls it has answered (for /readyz).

Deliberately simple: an upstream is assumed healthy unless its last ``threshold`` calls all
failed (no answer, or a 5xx) and the latest of them is less than ``window`` seconds old. The
window matters: a gateway reported unready gets no traffic, so without it an upstream that
recovered would never be seen to.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RecentFailures:
    __slots__ = ("_clock", "last_failure", "streak", "threshold", "window")

    def __init__(self, threshold: int = 5, window: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window = window
        self._clock = clock
        self.streak = 0  # failed calls since the last answered one
        self.last_failure = float("-inf")

    def succeeded(self) -> None:
        self.streak = 0

    def failed(self) -> None:
        self.streak += 1
        self.last_failure = self._clock()

    @property
    def healthy(self) -> bool:
        return self.streak < self.threshold or self._clock() - self.last_failure > self.window
