"""The ledger's writer: moves spooled records into the database in batches, off the request
path, and keeps trying while the database is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from llm_gateway.accounting.record import INSERT_SQL, UsageRecord
from llm_gateway.accounting.spool import Orphan, Segment, Spool, read_lines
from llm_gateway.storage.database import Database
from llm_gateway.storage.failures import DatabaseLost

log = logging.getLogger("llm_gateway.ledger")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# Dead processes' spools are looked for at start, then this often (a replica that shares the
# directory may die while we run).
ORPHAN_SCAN_SECONDS = 60.0


class LedgerWriter:
    def __init__(self, db: Database, spool: Spool, *, flush_seconds: float, batch_size: int,
                 metrics: Any = None) -> None:
        self.db = db
        self.spool = spool
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.metrics = metrics  # metrics.registry.GatewayMetrics, or None
        self.written = 0  # records this process moved into the database
        self.orphan_pending = 0  # a dead owner's records not yet written
        self.failing_since: float | None = None  # the database's outage, as we saw it
        self.last_error: str | None = None  # why the last write failed
        self._orphans: list[Orphan] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._retry_at = 0.0
        self._failures = 0
        self._next_scan = 0.0
        self._drain_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self.spool.pending + self.orphan_pending

    @property
    def stopped(self) -> str | None:
        """Why the writer task ended while it should run (nothing moves records then)."""
        task = self._task
        if task is None or not task.done() or self._closing:
            return None
        if task.cancelled():
            return "the ledger writer was cancelled"
        exc = task.exception()
        if exc is None:
            return "the ledger writer stopped"
        return f"the ledger writer stopped ({type(exc).__name__}: {exc})"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):
                    await self._wake.wait()
            self._wake.clear()
            closing = self._closing
            # In backoff, wake anyway (to keep the queue metric current) but leave the
            # database alone until the retry time; the last attempt at shutdown is always made.
            if closing or time.monotonic() >= self._retry_at:
                await self.drain()
            self._report()
            if closing:
                return

    async def drain(self) -> bool:
        """Write everything spooled so far; False when the database failed (it is retried
        later, records stay on disk)."""
        async with self._drain_lock:
            try:
                await self._drain()
            except Exception as exc:
                self._failed(exc)
                return False
        if self.failing_since is not None:
            log.warning("ledger database is back after %.1f s; queued records written",
                        time.monotonic() - self.failing_since)
        self.failing_since = None
        self._failures = 0
        self._retry_at = 0.0
        return True

    async def _drain(self) -> None:
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + ORPHAN_SCAN_SECONDS
            await self._claim_orphans()
        while self._orphans:
            orphan = self._orphans[0]
            while orphan.segments:
                lines = await asyncio.to_thread(read_lines, orphan.segments[0])
                await self._insert(lines)
                orphan.segments.pop(0).unlink(missing_ok=True)
                self.orphan_pending -= len(lines)
            self.spool.release(self._orphans.pop(0))
        self.spool.seal()
        while self.spool.sealed:
            segment: Segment = self.spool.sealed[0]
            await self._insert(await asyncio.to_thread(read_lines, segment.path))
            self.spool.written(segment)

    async def _claim_orphans(self) -> None:
        claimed = await asyncio.to_thread(self.spool.claim_orphans)
        for orphan in claimed:
            count = 0
            for path in orphan.segments:
                count += len(await asyncio.to_thread(read_lines, path))
            if count:
                log.info("ledger: replaying %d records left by process %s", count, orphan.owner)
            self.orphan_pending += count
            self._orphans.append(orphan)

    async def _insert(self, lines: list[bytes]) -> None:
        rows = []
        for line in lines:
            try:
                rows.append(UsageRecord.from_json(line).row())
            except Exception:  # a torn line (machine crash mid-write): nothing to recover
                log.error("ledger: dropping an unreadable spool line: %r", line[:200])
                if self.metrics is not None:
                    self.metrics.ledger_dropped.inc()
        for at in range(0, len(rows), self.batch_size):
            batch = rows[at:at + self.batch_size]
            await self.db.executemany(INSERT_SQL, batch)
            self.written += len(batch)

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        self.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, DatabaseLost):
            # Not an outage that ends by itself: said at every retry (30 s apart at most).
            log.error("ledger: %s; %d records kept in %s until a restart with the database "
                      "back", exc, self.pending, self.spool.dir)
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            return
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("ledger database unavailable (%s: %s); records queue on disk in %s",
                        type(exc).__name__, exc, self.spool.dir)
        else:
            log.debug("ledger database still unavailable (%s); retry in %.1f s", exc, delay)

    def _report(self) -> None:
        if self.metrics is not None:
            self.metrics.ledger_queue_depth.set(self.pending)

    async def aclose(self, timeout: float = 30.0) -> None:
        """One last drain (records a down database cannot take stay spooled), then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("ledger: the last write did not finish in %.0f s; %d records stay "
                        "spooled in %s for the next start", timeout, self.pending,
                        self.spool.dir)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        self._report()
