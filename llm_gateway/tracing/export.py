"""The span exporter: ended spans are encoded (otlp_wire.py) and queue up (bounded), and a
daemon thread sends them in batches through a transport (transport.py), retrying what a
receiver may take later.

The request path only encodes the span and appends its bytes to a deque (`add`): it never
blocks, never raises, and a full queue drops the newest span (counted, and logged at most once
a minute). Encoding there, not in the thread, costs the same CPU but lets the span's objects die
at once instead of ageing in the queue, where the garbage collector walked them again and again.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from llm_gateway.tracing import otlp_wire
from llm_gateway.tracing.spans import RecordedSpan
from llm_gateway.tracing.transport import Sent, Transport

log = logging.getLogger(__name__)

MAX_QUEUE = 2048
MAX_BATCH = 512
SCHEDULE_DELAY = 1.0  # seconds between exports while fewer than MAX_BATCH wait
EXPORT_TIMEOUT = 10.0  # seconds, each try
MAX_TRIES = 5
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 8.0  # seconds: 0.5, 1, 2, 4 (a Retry-After up to MAX)
DROP_LOG_EVERY = 60.0  # seconds


class SpanExporter:
    def __init__(self, transport: Transport, resource: dict[str, str], *,
                 max_queue: int = MAX_QUEUE, max_batch: int = MAX_BATCH,
                 schedule_delay: float = SCHEDULE_DELAY, timeout: float = EXPORT_TIMEOUT,
                 max_tries: int = MAX_TRIES, backoff: float = BACKOFF_FIRST,
                 sleep: Callable[[float], object] | None = None) -> None:
        self._transport = transport
        self._resource = otlp_wire.resource(resource)
        self._scope = otlp_wire.scope("llm_gateway")
        self._queue: collections.deque[bytes] = collections.deque()  # encoded spans
        self._max_queue, self._max_batch = max_queue, max_batch
        self._delay, self._timeout = schedule_delay, timeout
        self._max_tries, self._backoff = max_tries, backoff
        self._wake = threading.Event()  # a full batch, a flush, or shutdown
        self._stopping = threading.Event()
        self._open = True  # (is_set() is a Python call: this is what add reads)
        self._sleep = sleep or self._stopping.wait  # a backoff ends early at shutdown
        self._flushes: list[threading.Event] = []  # set once what was queued before is sent
        self._lock = threading.Lock()  # the flush list
        self.dropped = 0  # spans dropped: the queue was full
        self.failed = 0  # spans a receiver never took
        self._dropped_logged = 0
        self._dropped_log_at = 0.0
        self._thread = threading.Thread(target=self._run, name="span-exporter", daemon=True)
        self._thread.start()

    def add(self, span: RecordedSpan) -> None:
        """An ended span (the request path: never blocks, never raises)."""
        queue = self._queue
        if len(queue) >= self._max_queue or not self._open:
            self.dropped += 1
            return
        try:
            queue.append(otlp_wire.span_field(span))
        except Exception:  # a bug in a span's data must not fail the request
            self.failed += 1
            log.exception("could not encode span %r; dropped", span.name)
            return
        if len(queue) % self._max_batch == 0:  # a full batch: once, not on every span after
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is queued now; False when that took longer than ``timeout``."""
        if not self._thread.is_alive():
            return not self._queue
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Send what is queued (bounded by ``timeout``), then stop the thread."""
        self._open = False
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._transport.close()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._delay)
            self._wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
            stopping = self._stopping.is_set()
            # The delay passed, a flush or shutdown: send everything; a full batch woke us:
            # full batches only (the rest waits for the delay).
            # Counted now: spans that end while a batch is on its way wait for the next round
            # (chasing them would send many small batches under load).
            queued = len(self._queue)
            everything = not woken or bool(flushes) or stopping
            pending = queued if everything else queued - queued % self._max_batch
            while pending > 0:
                batch = self._batch(min(pending, self._max_batch))
                pending -= len(batch)
                self._send(batch)
            for done in flushes:
                done.set()
            self._log_drops()
            if stopping:
                return

    def _batch(self, size: int) -> list[bytes]:
        queue, batch = self._queue, list[bytes]()
        while queue and len(batch) < size:
            batch.append(queue.popleft())
        return batch

    def _send(self, batch: list[bytes]) -> None:
        payload = otlp_wire.export_request(self._resource, self._scope, batch)
        sent = Sent(False)
        for attempt in range(self._max_tries):
            try:
                sent = self._transport.send(payload, self._timeout)
            except Exception as exc:  # the transport's own bug: not worth retrying
                sent = Sent(False, problem=f"{type(exc).__name__}: {exc}")
            if sent.ok or not sent.retry or attempt + 1 == self._max_tries:
                break
            wait = self._backoff * 2 ** attempt
            if sent.retry_after is not None:
                wait = max(wait, sent.retry_after)
            if self._stopping.is_set() and wait > 1.0:
                break  # shutting down: one quick retry at most, not a long wait
            self._sleep(min(wait, BACKOFF_MAX))
        if not sent.ok:
            self.failed += len(batch)
            log.warning("span export failed (%s); %d spans lost", sent.problem, len(batch))

    def _log_drops(self) -> None:
        now = time.monotonic()
        if self.dropped > self._dropped_logged and now - self._dropped_log_at >= DROP_LOG_EVERY:
            log.warning("span export queue full: %d spans dropped (%d in all)",
                        self.dropped - self._dropped_logged, self.dropped)
            self._dropped_logged, self._dropped_log_at = self.dropped, now
