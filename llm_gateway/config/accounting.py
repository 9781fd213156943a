"""Where state lives (database, Redis, local spool) and how usage is priced and written."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.config.checks import non_empty


def _storage_url(value: str) -> str | None:
    if value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return "must be sqlite:///path/to/file.db or postgresql://user@host/db"


def _redis_url(value: str) -> str | None:
    if value.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be redis://host[:port][/db] (or rediss://, unix://)"


@dataclass(frozen=True)
class StorageConfig:
    # Keys, teams and the usage ledger. None: SQLite at <data_dir>/gateway.db.
    url: str | None = field(default=None, metadata={"check": _storage_url})
    # The SQLite file, the ledger's spool (records waiting for the database) and the key secret.
    data_dir: str = field(default="~/.local/state/llm-gateway", metadata={"check": non_empty})
    # PostgreSQL: the connections each gateway process may hold; and how long a query waits
    # for a free one (SQLite: its one connection) before its request gets a 503.
    pool_size: int = field(default=10, metadata={"ge": 1, "le": 1000})
    pool_timeout_seconds: float = field(default=10.0, metadata={"gt": 0})
    # Responses the gateway stored (the Responses API over chat) are deleted this long after
    # they were made, as OpenAI deletes its own after 30 days. None: kept until deleted.
    responses_retention_days: float | None = field(default=30.0, metadata={"gt": 0})
    # Shared rate limits, budgets and response cache across replicas. None: in memory.
    redis_url: str | None = field(default=None, metadata={"check": _redis_url})


@dataclass(frozen=True)
class PriceConfig:
    """USD per million tokens."""

    input: float = field(default=0.0, metadata={"ge": 0})
    output: float = field(default=0.0, metadata={"ge": 0})
    cached_input: float | None = field(default=None, metadata={"ge": 0})  # None = input price


@dataclass(frozen=True)
class AccountingConfig:
    enabled: bool = True  # the usage ledger; budgets need it
    prices: dict[str, PriceConfig] = field(default_factory=dict)  # model name or glob
    flush_seconds: float = field(default=1.0, metadata={"gt": 0})
    batch_size: int = field(default=500, metadata={"ge": 1})
    # Whether coalesced and cached answers count against the team's budget and bill.
    charge_grouped: bool = False
