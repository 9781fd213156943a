"""Where the batching engine's sequences keep their KV cells: the unified and split layouts.

Both hand out sequence ids (`n_ids` of them, shared by running sequences and cached
prefixes) and set up a new sequence's cells from the prefix it reuses. They differ in what
an id costs:

- unified: one pool of cells; an id is only a tag, so any free id will do, and a prefix is
  shared by tagging its cells (`copy` of a range) rather than duplicating them;
- split: a stream of `n_ctx` cells per id, decoded in one pass per run of consecutive ids, so
  ids are chosen to keep the running sequences together (`batch_slots`), and moved together
  again when ends leave holes (`arrange`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable

from llm_gateway.worker.engines import batch_slots
from llm_gateway.worker.engines.batch_prefix import PrefixCache
from llm_gateway.worker.engines.batch_sequence import Sequence
from llm_gateway.worker.engines.decoder import Decoder


class Layout(ABC):
    def __init__(self, decoder: Decoder, cache: PrefixCache, n_ids: int, n_ctx: int) -> None:
        self.decoder = decoder
        self.cache = cache
        self.n_ids = n_ids
        self.cells = n_ctx  # cells in all (see kv_usage); n_ctx per sequence either way
        self.free_ids = set(range(n_ids))
        self.compactions = 0  # times running sequences were moved together

    @abstractmethod
    def place(self, running: Collection[int], source: int, common: int) -> int:
        """Take an id for a new sequence whose first `common` tokens are those `source`
        holds (-1, 0: none); on return its cells hold exactly that prefix."""

    def arrange(self, running: list[Sequence]) -> None:  # noqa: B027 (optional)
        """Before a step: move running sequences where the layout wants them (no need here)."""

    def splits(self, ids: Iterable[int]) -> bool:
        """Whether a batch of these sequence ids takes more than one pass."""
        return False

    def free(self, seq_id: int) -> None:
        """Drop an id's cells and give the id back."""
        self.decoder.remove(seq_id, -1, -1)
        self.free_ids.add(seq_id)

    def evict_lru(self) -> bool:
        """Drop the least recently used cached prefix; False when none is left."""
        victim = self.cache.pop_lru()
        if victim is None:
            return False
        self.free(victim)
        return True

    def clear(self) -> None:
        """Forget every cached prefix and empty the cache (no sequence may be running)."""
        while (victim := self.cache.pop_lru()) is not None:
            self.free_ids.add(victim)
        self.decoder.clear()


class UnifiedLayout(Layout):
    def place(self, running: Collection[int], source: int, common: int) -> int:
        seq_id = self._take_id(source if common > 0 else -1)
        if common > 0 and seq_id == source:
            self.decoder.remove(seq_id, common, -1)
        elif common > 0:
            self.decoder.copy(source, seq_id, 0, common)
        return seq_id

    def _take_id(self, source: int) -> int:
        """A free id; else the LRU cached entry's (`source`'s as a last resort)."""
        if self.free_ids:
            seq_id = min(self.free_ids)
            self.free_ids.discard(seq_id)
            return seq_id
        victim = self.cache.pop_lru(keep=source)
        if victim is not None:
            self.decoder.remove(victim, -1, -1)
            return victim
        # Only the source itself is cached: the new sequence takes it over.
        self.cache.take(source)
        return source


class SplitLayout(Layout):
    def __init__(self, decoder: Decoder, cache: PrefixCache, n_ids: int, n_ctx: int) -> None:
        super().__init__(decoder, cache, n_ids, n_ctx)
        self.cells = n_ctx * n_ids

    def place(self, running: Collection[int], source: int, common: int) -> int:
        """An id next to the running block (batch_slots); its KV state set up.

        A copy between streams moves the cells the source occupies, at once
        (`Decoder.copy`); the cells past the common prefix are dropped from it.
        """
        decoder, cache = self.decoder, self.cache
        source = source if common > 0 else -1
        # A cached stream that the new prompt extends (the next turn of a conversation) is
        # taken over where it lies if its id suits the block; else it is copied, and a
        # partial match (a shared system prompt) is always copied, so the entry stays.
        take = source in cache and common == cache.length(source)
        placed = batch_slots.place(running, sorted(self.free_ids), cache.lru_ids(), source,
                                   take)
        seq_id = placed.seq_id
        for victim in placed.evict:
            cache.take(victim)
            if victim != source:
                decoder.remove(victim, -1, -1)
        if placed.move is not None:
            old, new = placed.move
            decoder.copy(old, new, -1, -1)
            cache.move(old, new)
            self.free_ids.discard(new)
        self.free_ids.discard(seq_id)
        if seq_id in cache:
            cache.take(seq_id)
        if common > 0 and seq_id == source:
            decoder.remove(seq_id, common, -1)  # the prefix stays in place
        else:
            decoder.remove(seq_id, -1, -1)
            if common > 0:
                decoder.copy(source, seq_id, -1, -1)
                decoder.remove(seq_id, common, -1)
        return seq_id

    def arrange(self, running: list[Sequence]) -> None:
        """Move running sequences onto consecutive ids (batch_slots.compaction)."""
        ids = [s.seq_id for s in running]
        if batch_slots.runs(ids) <= 1:
            return  # the usual case, checked before the cache's order is listed
        moves = batch_slots.compaction(ids, self.n_ids, self.free_ids, self.cache.lru_ids())
        decoder = self.decoder
        by_id = {s.seq_id: s for s in running}
        for move in moves:
            if move.kind == "evict":
                self.cache.take(move.src)
                self.free(move.src)
                continue
            decoder.copy(move.src, move.dst, -1, -1)
            decoder.remove(move.src, -1, -1)
            self.free_ids.discard(move.dst)
            self.free_ids.add(move.src)
            if move.kind == "entry":
                self.cache.move(move.src, move.dst)
            else:
                moved = by_id[move.src]
                moved.seq_id = move.dst
                moved.sampler.attach(move.dst)  # (a chain run in the decode follows it)
        self.compactions += 1

    def splits(self, ids: Iterable[int]) -> bool:
        return batch_slots.runs(ids) > 1
