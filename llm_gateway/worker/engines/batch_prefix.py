"""Prefix reuse for the batching engine: finished sequences kept in the KV cache, LRU-bounded.

A finished sequence's KV cells stay under its sequence id, with the tokens they hold. A new
request whose prompt starts with some of those tokens (same system prompt, the previous turn
of the conversation) copies that part (`Decoder.copy`; with the unified cache this only
tags the cells, nothing is recomputed or duplicated). Running sequences are sources too, for
the part of their prompt already evaluated, so concurrent requests with one system prompt
share it.

Bounds: one sequence id per entry (ids are `n_seq_max`, shared with running sequences) and
the KV cells themselves: the least recently used entry goes first when an id or cells are
needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    same = a[:n] == b[:n]
    return n if same.all() else int(np.argmin(same))


class PrefixCache:
    """Idle sequence ids holding reusable KV state: seq_id -> tokens, least recent first."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._entries

    def cells(self) -> int:
        """Tokens held by cached entries (an upper bound on their cells: copies share)."""
        return sum(len(t) for t in self._entries.values())

    def length(self, seq_id: int) -> int:
        return len(self._entries[seq_id])

    def put(self, seq_id: int, tokens: list[int]) -> None:
        self._entries[seq_id] = np.asarray(tokens, dtype=np.intc)
        self._entries.move_to_end(seq_id)

    def take(self, seq_id: int) -> None:
        """Forget an entry whose id a new sequence takes over (its cells stay, as its own)."""
        del self._entries[seq_id]

    def lru_ids(self) -> list[int]:
        """The entries' ids, least recently used first."""
        return list(self._entries)

    def move(self, old: int, new: int) -> None:
        """The entry under `old` now lives under `new` (its cells were copied there)."""
        self._entries = OrderedDict((new if k == old else k, v)
                                    for k, v in self._entries.items())

    def pop_lru(self, keep: int = -1) -> int | None:
        """Remove the least recently used entry (not `keep`); its id, or None if none."""
        for seq_id in self._entries:
            if seq_id != keep:
                del self._entries[seq_id]
                return seq_id
        return None

    def best(self, prompt: np.ndarray,
             running: Iterable[tuple[int, np.ndarray]]) -> tuple[int, int]:
        """(seq_id, length) of the longest held prefix of `prompt`, cached or running.

        At most len(prompt) - 2 tokens: the last prompt token must be evaluated again, since
        sampling needs its logits, and it is evaluated with the one before it: llama.cpp's
        CPU kernels for a lone prompt token round differently from those for several, and
        its logits then differ from a fresh run's (by up to 0.07 in log-probability on the
        test prompts, enough to flip a near tie). With two, a reused prefix gives the fresh
        run's logits bit for bit. (-1, 0) when nothing matches.
        """
        limit = len(prompt) - 2
        best_id, best_len = -1, 0
        candidates = [*self._entries.items(), *running]
        for seq_id, tokens in candidates:
            n = min(common_prefix(prompt, tokens), limit)
            if n > best_len:
                best_id, best_len = seq_id, n
        if best_id in self._entries:
            self._entries.move_to_end(best_id)  # used: the last to be evicted
        return best_id, best_len
