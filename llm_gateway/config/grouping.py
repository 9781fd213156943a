"""Request grouping: coalescing identical in-flight requests, caching deterministic answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llm_gateway.config.access import CoalesceMode

CacheBackend = Literal["memory", "redis"]


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    backend: CacheBackend = "memory"  # redis: storage.redis_url, shared by replicas
    ttl_seconds: float = field(default=300.0, metadata={"gt": 0})
    max_bytes: int = field(default=256 * 1024 * 1024, metadata={"ge": 0})
    max_entry_bytes: int = field(default=4 * 1024 * 1024, metadata={"ge": 0})


@dataclass(frozen=True)
class ModelGroupingConfig:
    coalesce: CoalesceMode | None = None
    cache: bool | None = None


@dataclass(frozen=True)
class GroupingConfig:
    # deterministic: temperature 0 or a seed; all: every request; off: never.
    coalesce: CoalesceMode = "deterministic"
    cache: CacheConfig = field(default_factory=CacheConfig)
    models: dict[str, ModelGroupingConfig] = field(default_factory=dict)  # name or glob
    max_waiter_buffer_bytes: int = field(default=8 * 1024 * 1024, metadata={"ge": 0})
