"""A bounded, time-limited map: what the authenticator remembers about presented keys.

Entries are fresh for `ttl` seconds (auth.cache_seconds): the delay with which a revocation on
another replica (or through the CLI) takes effect here. A stale entry is kept (until pushed
out) with the time the database last confirmed it, so that a key known a minute ago still
works while the database is unreachable, for at most auth.stale_seconds after that
confirmation. Least recently used entries go first when the map is full, so a flood of
made-up keys cannot grow memory without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    __slots__ = ("_clock", "_entries", "limit", "ttl")

    def __init__(self, ttl: float, limit: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.limit = limit
        self._clock = clock
        # key -> (fresh until, confirmed at, value), both times on `clock`
        self._entries: OrderedDict[str, tuple[float, float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            return None
        self._entries.move_to_end(key)
        return entry[2]

    def stale(self, key: str, max_age: float | None = None) -> V | None:
        """The value, fresh or not, if confirmed at most `max_age` seconds ago (None: however
        long ago), for when the source of truth cannot be asked."""
        entry = self._entries.get(key)
        if entry is None or (max_age is not None and self._clock() - entry[1] > max_age):
            return None
        return entry[2]

    def extend(self, key: str, max_age: float) -> None:
        """Fresh again for `ttl`, but no longer than `max_age` after its confirmation: the
        source cannot be asked now, and asking it on every request would not help."""
        entry = self._entries.get(key)
        if entry is not None:
            until = min(self._clock() + self.ttl, entry[1] + max_age)
            self._entries[key] = (until, entry[1], entry[2])

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def items(self) -> Iterator[tuple[str, V]]:
        """Every entry, fresh or stale (a snapshot: the caller may discard while iterating)."""
        return iter([(key, entry[2]) for key, entry in self._entries.items()])

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0:
            return  # cache_seconds: 0 means every request asks the database
        now = self._clock()
        self._entries[key] = (now + self.ttl, now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
