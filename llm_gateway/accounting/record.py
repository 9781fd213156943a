"""One usage record per request, and the ledger's table that holds them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from llm_gateway.call import Result
from llm_gateway.echo import clip

GROUPED = frozenset({"coalesced", "hit"})  # answered without a backend call of their own


def new_record_id() -> str:
    """Unique, and rising with time: inserts append to the primary key's index instead of
    landing at random places in it (a random uuid made each insert several times dearer)."""
    return f"{time.time_ns():016x}{os.urandom(6).hex()}"


@dataclass(slots=True)
class UsageRecord:
    request_id: str  # x-request-id: the client's own or one the gateway made up
    time: float  # epoch seconds, when the request arrived
    key_id: str | None
    team: str | None
    model: str  # the name the client asked for
    served_model: str  # the name the backend saw
    backend: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the backend's prompt cache
    cost: float = 0.0  # USD charged (0 when not charged)
    latency_ms: float | None = None  # arrival to the answer's end
    ttft_ms: float | None = None  # streams: arrival to the first content
    status: int = 200
    outcome: str = "ok"  # ok | client_gone | upstream_error | timeout | error
    partial: bool = False  # the answer was cut short; its tokens were counted, not reported
    grouping: str | None = None  # None | miss | coalesced | hit
    saved_tokens: int = 0  # tokens a grouped answer did not cost a backend
    charged: bool = True  # whether its tokens and cost count against budgets
    # The record's identity, made here: a replayed record is written once (idempotent
    # inserts), while two requests sharing a client-chosen x-request-id still count twice.
    record_id: str = field(default_factory=lambda: new_record_id())
    # What was called: the path under /v1 (ids included) and the method. The rest is filled
    # for passthrough calls (files, images, audio...): the bytes each way, what the answer
    # counted besides tokens (`units` of `unit`: images, characters, seconds) and the id of
    # the object it returned (a batch, a file...).
    endpoint: str | None = None
    method: str | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    units: float = 0.0
    unit: str | None = None
    object_id: str | None = None
    # Routing (routing/, issue 15): which of the route's deployments answered (None when the
    # route has none), how many deployments or models this request's own call tried (1 for a
    # plain call; 0 for a grouped answer, which made no backend call of its own), and why it
    # went to a fallback model ("error", "rate_limit", "context_window", "content_policy").
    deployment: str | None = None
    attempts: int = 1
    fallback_reason: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> bytes:
        """One spool line (without its newline)."""
        return orjson.dumps(self)  # orjson reads (slotted) dataclasses natively, and fast

    @classmethod
    def from_json(cls, line: bytes) -> UsageRecord:
        data: dict[str, Any] = orjson.loads(line)
        return cls(**{k: data[k] for k in FIELDS if k in data})

    def row(self) -> tuple[Any, ...]:
        """The values of `INSERT_SQL`, in COLUMNS order (booleans as 0/1 for both dialects).
        Names a client chose are clipped here, off the request path (llm_gateway.echo)."""
        return (self.request_id, self.time, self.key_id, self.team, clip(self.model),
                clip(self.served_model), self.backend, self.prompt_tokens, self.completion_tokens,
                self.cached_tokens, float(self.cost), _float(self.latency_ms),
                _float(self.ttft_ms), self.status, self.outcome, int(self.partial),
                self.grouping, self.saved_tokens, int(self.charged), self.record_id,
                _clip(self.endpoint), self.method, self.request_bytes, self.response_bytes,
                float(self.units), self.unit, self.object_id, self.deployment,
                self.attempts, self.fallback_reason)


def own_attempts(result: Result) -> int:
    """The backend calls a request made itself: a grouped answer (coalesced, or from the cache)
    made none, whatever its leader tried, as it cost no tokens of its own (`saved_tokens`)."""
    return 0 if result.grouping in GROUPED else result.attempts


def _clip(value: str | None) -> str | None:
    return None if value is None else clip(value)


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


FIELDS = tuple(f.name for f in fields(UsageRecord))
COLUMNS = FIELDS
TABLE = "usage_records"

# The record id is the primary key: a record replayed from the spool after a crash, or
# written twice by two processes replaying the same dead one's spool, is kept once.
INSERT_SQL = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (record_id) DO NOTHING"
)

# Portable SQL: SQLite reads DOUBLE PRECISION as REAL and BIGINT as INTEGER.
LEDGER_STEPS = [
    f"""
    CREATE TABLE {TABLE} (
        record_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        time DOUBLE PRECISION NOT NULL,
        key_id TEXT,
        team TEXT,
        model TEXT NOT NULL,
        served_model TEXT NOT NULL,
        backend TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        cached_tokens BIGINT NOT NULL DEFAULT 0,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        latency_ms DOUBLE PRECISION,
        ttft_ms DOUBLE PRECISION,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        partial INTEGER NOT NULL DEFAULT 0,
        grouping TEXT,
        saved_tokens BIGINT NOT NULL DEFAULT 0,
        charged INTEGER NOT NULL DEFAULT 1
    );
    -- Reports filter by time; budgets read one key's or one team's spend since a date.
    CREATE INDEX {TABLE}_time ON {TABLE} (time);
    CREATE INDEX {TABLE}_request ON {TABLE} (request_id);
    CREATE INDEX {TABLE}_key_time ON {TABLE} (key_id, time);
    CREATE INDEX {TABLE}_team_time ON {TABLE} (team, time)
    """,
    # Passthrough calls: what was called, the bytes each way, units other than tokens.
    f"""
    ALTER TABLE {TABLE} ADD COLUMN endpoint TEXT;
    ALTER TABLE {TABLE} ADD COLUMN method TEXT;
    ALTER TABLE {TABLE} ADD COLUMN request_bytes BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE {TABLE} ADD COLUMN response_bytes BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE {TABLE} ADD COLUMN units DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE {TABLE} ADD COLUMN unit TEXT;
    ALTER TABLE {TABLE} ADD COLUMN object_id TEXT
    """,
    # Routing: the deployment that answered, the attempts made, why it fell back. Rows from
    # before read as a plain call (no deployment, one attempt, no fallback).
    f"""
    ALTER TABLE {TABLE} ADD COLUMN deployment TEXT;
    ALTER TABLE {TABLE} ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE {TABLE} ADD COLUMN fallback_reason TEXT
    """,
]
