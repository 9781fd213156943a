"""Failure injection of the fake OpenAI upstream: queued failures, delays and dropped streams.

:class:`FakeFailures` only queues them; ``FakeUpstream._handle`` applies them, in order: a
delay, then an injected failure, then the API-key check, then a drop.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    message: str


class FakeFailures:
    """The injection controls of :class:`~llm_gateway.testing.fake_upstream.FakeUpstream`."""

    _lock: threading.Lock
    _failures: collections.deque[_Failure]
    _delays: collections.deque[float]
    _drops: collections.deque[int]

    # --- control (called from the test thread) ------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        message: str = "injected failure",
    ) -> None:
        """The next ``times`` requests to /v1 answer ``status`` with an OpenAI error body."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, message) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests to /v1 wait ``seconds`` before the first response byte."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def drop_next_stream(self, after_chunks: int = 2, times: int = 1) -> None:
        """The next ``times`` requests that get past auth and injected failures are cut off.

        A stream sends ``after_chunks`` data events (never its finish chunk or [DONE]) and then
        the connection closes; a non-stream request's connection closes with no response.
        """
        with self._lock:
            self._drops.extend([after_chunks] * times)
