"""The usage ledger: every request's record, durably, in SQLite or PostgreSQL.

`record()` is what the request path calls: it appends the record to the local spool (a
`write` of one line, microseconds) and returns; a writer task moves spooled records into the
database in batches. A crash loses no record that `record()` returned for, a replay counts none
twice (inserts are idempotent on the request id), and a database outage only makes the spool
grow (`llm_gateway_ledger_queue_depth`) until it is back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llm_gateway.accounting.record import LEDGER_STEPS, TABLE, UsageRecord
from llm_gateway.accounting.spool import Spool
from llm_gateway.accounting.writer import LedgerWriter
from llm_gateway.config import Config
from llm_gateway.storage.database import Database, data_dir

log = logging.getLogger("llm_gateway.ledger")

SPOOL_DIR = "ledger-spool"


class Ledger:
    def __init__(self, db: Database, spool_dir: Path, *, flush_seconds: float = 1.0,
                 batch_size: int = 500, metrics: Any = None) -> None:
        self.db = db
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.metrics = metrics
        self.writer = LedgerWriter(db, self.spool, flush_seconds=flush_seconds,
                                   batch_size=batch_size, metrics=metrics)
        self.dropped = 0  # records that could not even be spooled (disk full)
        self.spool_error: str | None = None  # why the last record could not be spooled
        self._started = False

    @classmethod
    def from_config(cls, db: Database, config: Config, metrics: Any = None) -> Ledger:
        acc = config.accounting
        return cls(db, data_dir(config) / SPOOL_DIR, flush_seconds=acc.flush_seconds,
                   batch_size=acc.batch_size, metrics=metrics)

    async def start(self) -> None:
        """Create the table, open our spool; the writer first replays dead processes' spools."""
        await self.db.migrate("ledger", LEDGER_STEPS)
        self.spool.open()
        self.writer.start()
        self._started = True

    def record(self, rec: UsageRecord) -> None:
        """Keep `rec` durably; never raises, never waits for the database."""
        try:
            self.spool.append(rec.to_json() + b"\n")
        except Exception as exc:
            self.dropped += 1
            self.spool_error = f"{type(exc).__name__}: {exc}"
            if self.metrics is not None:
                self.metrics.ledger_dropped.inc()
            log.error("ledger: could not spool the record of %s (%s: %s)", rec.request_id,
                      type(exc).__name__, exc)
            return
        if self.spool_error is not None:
            self.spool_error = None  # spooling works again
        if self.spool.unsealed >= self.batch_size:
            self.writer.wake()

    @property
    def pending(self) -> int:
        """Records on disk, not yet in the database."""
        return self.writer.pending

    async def flush(self) -> bool:
        """Write what is spooled now; False when the database did not take it."""
        return await self.writer.drain()

    async def spent(self, *, key_id: str | None = None, team: str | None = None,
                    since: float) -> tuple[int, float]:
        """Tokens and cost charged to a key and/or a team since an epoch time (records still
        in the spool, at most a flush interval old, are not counted)."""
        where = ["time >= ?", "charged = 1"]
        args: list[float | str] = [since]
        if key_id is not None:
            where.append("key_id = ?")
            args.append(key_id)
        if team is not None:
            where.append("team = ?")
            args.append(team)
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens,"
            f" COALESCE(SUM(cost), 0) AS cost FROM {TABLE} WHERE {' AND '.join(where)}",
            *args)
        assert row is not None
        return int(row["tokens"]), float(row["cost"])

    def health(self) -> str:
        """For /readyz: "ok", or what is wrong."""
        problem = self.problem()
        if problem is not None:
            return problem
        if self.writer.failing_since is not None:
            return (f"database unavailable ({self.writer.last_error}); {self.pending} records "
                    "queued on disk")
        return "ok"

    def problem(self) -> str | None:
        """What keeps records from being kept at all, for /readyz to answer 503: the writer
        stopped, or records cannot be spooled. A database outage is not one: records wait in
        the spool (and `health` says so)."""
        if self._started and (stopped := self.writer.stopped) is not None:
            return stopped
        if self.spool_error is not None:
            return f"records cannot be spooled ({self.spool_error}); they are being lost"
        return None

    async def aclose(self, timeout: float = 30.0) -> None:
        """Write what is left (shutdown), then close the spool; what a down database could
        not take stays spooled and is replayed at the next start."""
        if not self._started:
            return
        self._started = False
        await self.writer.aclose(timeout)
        self.spool.close()
        if self.writer.pending:
            log.warning("ledger: %d records stay spooled in %s until the database is back",
                        self.writer.pending, self.spool.dir)
