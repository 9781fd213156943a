"""A bounded, time-limited map: what the authenticator remembers about presented keys.

Entries are fresh for `ttl` seconds (auth.cache_seconds): the delay with which a revocation on
another replica (or through the CLI) takes effect here. A stale entry is kept (until pushed
out) so that a key known a minute ago still works while the database is unreachable. Least
recently used entries go first when the map is full, so a flood of made-up keys cannot grow
memory without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    __slots__ = ("_clock", "_entries", "limit", "ttl")

    def __init__(self, ttl: float, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.limit = limit
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def stale(self, key: str) -> V | None:
        """The value however old (for when the source of truth cannot be asked)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0:
            return  # cache_seconds: 0 means every request asks the database
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
