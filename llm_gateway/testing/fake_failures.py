"""Failure injection of the fake OpenAI upstream: queued failures, delays and dropped streams.

:class:`FakeFailures` only queues them; ``FakeUpstream._handle`` applies them, in order: a
delay, then an injected failure, then the API-key check, then a drop or a stream fault.
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
    code: str | None = None  # the error body's code; None: the status's usual one


@dataclass
class _StreamFault:
    huge_event: int = 0  # bytes of an extra event sent before the stream's own
    stall_after_done: bool = False  # hold the connection open after [DONE]


class FakeFailures:
    """The injection controls of :class:`~llm_gateway.testing.fake_upstream.FakeUpstream`."""

    _lock: threading.Lock
    _failures: collections.deque[_Failure]
    _delays: collections.deque[float]
    _drops: collections.deque[int]
    _stream_faults: collections.deque[_StreamFault]

    # --- control (called from the test thread) ------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        message: str = "injected failure",
        code: str | None = None,
    ) -> None:
        """The next ``times`` requests to /v1 answer ``status`` with an OpenAI error body
        (its ``code`` given, e.g. context_length_exceeded, or the status's usual one).

        A status outside 100-599, which no HTTP server would send, is written by hand.
        """
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, message, code)
                                  for _ in range(times))

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

    def huge_event_next(self, size: int, times: int = 1) -> None:
        """The next ``times`` streams begin with one extra chunk event of about ``size`` bytes
        (its delta content is padding), written in one piece."""
        with self._lock:
            self._stream_faults.extend(_StreamFault(huge_event=size) for _ in range(times))

    def stall_after_done_next(self, times: int = 1) -> None:
        """The next ``times`` streams send all their events, [DONE] included, then keep the
        body open without a byte more until the client leaves (or the fake stops)."""
        with self._lock:
            self._stream_faults.extend(_StreamFault(stall_after_done=True) for _ in range(times))
