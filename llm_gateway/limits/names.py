"""Settings keyed by model name or glob (`limits.models`, `accounting.prices`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Generic, TypeVar

V = TypeVar("V")

CACHE_LIMIT = 10_000  # names remembered: a bound against clients inventing names


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


class NameMap(Generic[V]):
    """Exact names first, then globs in the config's order; the answer for each name asked
    is cached (names are few), so a lookup is one dict access after the first."""

    def __init__(self, entries: Mapping[str, V]) -> None:
        self._exact = {k: v for k, v in entries.items() if not is_glob(k)}
        self._globs = [(k, v) for k, v in entries.items() if is_glob(k)]
        self._cache: dict[str, V | None] = {}

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)

    def get(self, name: str) -> V | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        found = self._exact.get(name)
        if found is None:
            found = next((v for k, v in self._globs if fnmatch.fnmatchcase(name, k)), None)
        if len(self._cache) < CACHE_LIMIT:
            self._cache[name] = found
        return found
