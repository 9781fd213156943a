"""The batching engine's step loop: many sequences, one `llama_decode` per step.

Each step builds one batch: the next token of every generating sequence first (so they all
advance every step), then prompt chunks of sequences still reading their prompt, first come
first served, until `n_batch` tokens. A long prompt is thus fed over several steps and never
stalls the others for more than one batch. After the decode each sequence whose logits were
asked for samples with its own sampler chain.

Each sequence may grow up to `n_ctx` tokens. With a split KV cache every sequence id has a
stream of `n_ctx` cells, so it never runs out. With a unified one, `n_ctx` cells are shared:
when a decode finds no free cells, cached prefixes are evicted (least recently used first);
when none are left, the longest running sequence ends with "length": the context is full,
as it would be for a single sequence.
"""

from __future__ import annotations

import logging
import time

import llama_cpp
import numpy as np

from llm_gateway.worker.engines import batch_slots, llama_run
from llm_gateway.worker.engines.base import Job
from llm_gateway.worker.engines.batch_prefix import PrefixCache
from llm_gateway.worker.engines.batch_sequence import Out, Sequence

log = logging.getLogger(__name__)

_KV_FULL = 1  # llama_decode: no KV slot for the batch (the cache is left as it was)


class Scheduler:
    def __init__(self, llama: llama_cpp.Llama, vocab: llama_run.Vocab, parallel: int,
                 n_seq_max: int, n_ctx: int, unified: bool) -> None:
        self.llama = llama
        self.vocab = vocab
        self.parallel = parallel
        self.n_ctx = n_ctx  # per sequence
        self.unified = unified
        self._cells = n_ctx if unified else n_ctx * n_seq_max
        self.n_batch = llama.n_batch
        self._ctx = llama._ctx.ctx
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        # One sequence id per token: each token belongs to exactly one sequence (prefixes
        # are shared by copying cells, not by tagging tokens with several ids).
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._n_ids = n_seq_max
        self._free_ids = set(range(n_seq_max))
        self.running: list[Sequence] = []
        self.cache = PrefixCache()
        self._order = 0
        # Counters, read by stats() from the event loop's thread (plain numbers).
        self.steps = 0
        self.split_steps = 0  # split cache: steps whose sequences took more than one pass
        self.compactions = 0  # split cache: times running sequences were moved together
        self.decode_seconds = 0.0
        self.prompt_tokens = 0
        self.generated_tokens = 0

    # -- admission --------------------------------------------------------------------------

    def has_room(self) -> bool:
        return len(self.running) < self.parallel

    def admit(self, job: Job, work: object, prompt: list[int], seed: int) -> Sequence:
        """Start a sequence: take an id, copy the longest cached prefix, build its sampler.

        Raises ValueError (prompt too long, bad grammar); nothing is held then.
        """
        if not prompt or len(prompt) + 1 > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit a context of "
                             f"{self.n_ctx}")
        sampler = llama_run.build_sampler(self.llama, job.sampling, job.grammar, seed)
        source, common = -1, 0
        if job.seed is None:
            # A seeded request is recomputed from scratch, as on the simple engine: reused
            # cells can differ from recomputed ones in the last bits, enough to flip a
            # sampled token, and a seed promises the same answer every time.
            running = [(s.seq_id, np.asarray(s.tokens[:s.n_past], dtype=np.intc))
                       for s in self.running if s.n_past > 0]
            source, common = self.cache.best(np.asarray(prompt, dtype=np.intc), running)
        if self.unified:
            seq_id = self._take_id(source if common > 0 else -1)
            if common > 0 and seq_id == source:
                llama_cpp.llama_memory_seq_rm(self._mem, seq_id, common, -1)
            elif common > 0:
                llama_cpp.llama_memory_seq_cp(self._mem, source, seq_id, 0, common)
        else:
            seq_id = self._place(source if common > 0 else -1, common)
        if common > 0:
            self.cache.record_hit(common)
        self._order += 1
        seq = Sequence(job, work, prompt, seq_id, common, sampler, self.n_ctx, self._order)
        self.running.append(seq)
        self.prompt_tokens += len(prompt)
        return seq

    def _place(self, source: int, common: int) -> int:
        """Split cache: an id next to the running block (batch_slots); its KV state set up.

        Between streams only whole buffers are copied (at the next decode, in the order
        asked); the cells past the common prefix are dropped from a copy at once.
        """
        mem = self._mem
        # A cached stream that the new prompt extends (the next turn of a conversation) is
        # taken over where it lies if its id suits the block; else it is copied, and a
        # partial match (a shared system prompt) is always copied, so the entry stays.
        take = source in self.cache and common == self.cache.length(source)
        placed = batch_slots.place({s.seq_id for s in self.running}, sorted(self._free_ids),
                                   self.cache.lru_ids(), source, take)
        seq_id = placed.seq_id
        for victim in placed.evict:
            self.cache.take(victim)
            if victim != source:
                llama_cpp.llama_memory_seq_rm(mem, victim, -1, -1)
        if placed.move is not None:
            old, new = placed.move
            llama_cpp.llama_memory_seq_cp(mem, old, new, -1, -1)
            self.cache.move(old, new)
            self._free_ids.discard(new)
        self._free_ids.discard(seq_id)
        if seq_id in self.cache:
            self.cache.take(seq_id)
        if common > 0 and seq_id == source:
            llama_cpp.llama_memory_seq_rm(mem, seq_id, common, -1)  # the prefix stays in place
        else:
            llama_cpp.llama_memory_seq_rm(mem, seq_id, -1, -1)
            if common > 0:
                llama_cpp.llama_memory_seq_cp(mem, source, seq_id, -1, -1)
                llama_cpp.llama_memory_seq_rm(mem, seq_id, common, -1)
        return seq_id

    def _compact(self) -> None:
        """Split cache: move running sequences onto consecutive ids (batch_slots.compaction)."""
        ids = [s.seq_id for s in self.running]
        if batch_slots.runs(ids) <= 1:
            return  # the usual case, checked before the cache's order is listed
        moves = batch_slots.compaction(ids, self._n_ids, self._free_ids, self.cache.lru_ids())
        mem = self._mem
        by_id = {s.seq_id: s for s in self.running}
        for move in moves:
            if move.kind == "evict":
                self.cache.take(move.src)
                llama_cpp.llama_memory_seq_rm(mem, move.src, -1, -1)
                self._free_ids.add(move.src)
                continue
            llama_cpp.llama_memory_seq_cp(mem, move.src, move.dst, -1, -1)
            llama_cpp.llama_memory_seq_rm(mem, move.src, -1, -1)
            self._free_ids.discard(move.dst)
            self._free_ids.add(move.src)
            if move.kind == "entry":
                self.cache.move(move.src, move.dst)
            else:
                seq = by_id[move.src]
                seq.seq_id = move.dst
        self.compactions += 1

    def _take_id(self, source: int) -> int:
        """Unified cache: a free id; else the LRU cached entry's (`source`'s as a last resort)."""
        if self._free_ids:
            seq_id = min(self._free_ids)
            self._free_ids.discard(seq_id)
            return seq_id
        victim = self.cache.pop_lru(keep=source)
        if victim is not None:
            llama_cpp.llama_memory_seq_rm(self._mem, victim, -1, -1)
            return victim
        # Only the source itself is cached: the new sequence takes it over.
        self.cache.take(source)
        return source

    # -- one step ---------------------------------------------------------------------------

    def step(self, out: Out) -> bool:
        """Cancel, batch, decode and sample once; False when there was nothing to decode."""
        for seq in [s for s in self.running if s.work.cancelled]:
            self._release(seq, out, "cancelled")
        if not self.unified:
            self._compact()
        while True:
            plan = self._fill()
            if not plan:
                return False
            started = time.perf_counter()
            rc = llama_cpp.llama_decode(self._ctx, self._batch)
            # On a GPU the decode only queues the work; waiting here (sampling would wait
            # anyway) keeps the GPU's time out of the Python share the counters report.
            llama_cpp.llama_synchronize(self._ctx)
            self.decode_seconds += time.perf_counter() - started
            if rc == 0:
                break
            if rc != _KV_FULL:
                raise RuntimeError(f"llama_decode returned {rc}")
            self._make_room(out)
        self.steps += 1
        for seq, count, index in plan:
            seq.n_past += count
            if index < 0:
                continue  # a prompt chunk that is not the last: nothing to sample yet
            seq.next_token = None
            before = seq.generated
            seq.accept(self.llama, self.vocab, index, out)
            self.generated_tokens += seq.generated - before
            if seq.finish is not None:
                self._release(seq, out)
        return True

    def _fill(self) -> list[tuple[Sequence, int, int]]:
        """Write this step's batch; (sequence, tokens added, logits index or -1) for each.

        Every generating sequence's next token, then prompt chunks first come, first served,
        up to n_batch tokens; written in sequence-id order, so that llama.cpp's micro-batches
        (runs of consecutive ids, see batch_slots) are as few as the ids allow.
        """
        parts: list[tuple[Sequence, list[int], bool]] = []  # (sequence, tokens, ends prompt)
        n = 0
        for seq in self.running:
            if seq.next_token is not None:
                parts.append((seq, [seq.next_token], True))
                n += 1
        for seq in self.running:  # admission order: the oldest prompt goes first
            if n >= self.n_batch:
                break
            if seq.prefilling:
                chunk = seq.prompt_chunk(self.n_batch - n)
                parts.append((seq, chunk, seq.n_past + len(chunk) == len(seq.prompt)))
                n += len(chunk)
        if len(parts) > 1:
            parts.sort(key=lambda part: part[0].seq_id)
            if not self.unified and batch_slots.runs(p[0].seq_id for p in parts) > 1:
                self.split_steps += 1
        batch = self._batch
        plan: list[tuple[Sequence, int, int]] = []
        i = 0
        for seq, tokens, ends in parts:
            for k, token in enumerate(tokens):
                self._put(batch, i + k, token, seq.n_past + k, seq.seq_id, False)
            i += len(tokens)
            if ends:
                batch.logits[i - 1] = True
            plan.append((seq, len(tokens), i - 1 if ends else -1))
        batch.n_tokens = i
        return plan

    @staticmethod
    def _put(batch: llama_cpp.llama_batch, i: int, token: int, pos: int, seq_id: int,
             logits: bool) -> None:
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits

    def _make_room(self, out: Out) -> None:
        """The cache is full: evict one cached prefix, else end the longest sequence."""
        victim = self.cache.pop_lru()
        if victim is not None:
            llama_cpp.llama_memory_seq_rm(self._mem, victim, -1, -1)
            self._free_ids.add(victim)
            return
        longest = max(self.running, key=lambda s: s.n_past)
        log.warning("KV cache full with %d sequences: ending the longest (%d tokens)",
                    len(self.running), longest.n_past)
        self._release(longest, out, "length")

    # -- ends -------------------------------------------------------------------------------

    def _release(self, seq: Sequence, out: Out, reason: str | None = None) -> None:
        """End a sequence; keep its KV cells as a cached prefix (or free them)."""
        self.running.remove(seq)
        seq.end(out, reason)
        if seq.n_past > 0:
            self.cache.put(seq.seq_id, seq.cached_tokens())
        else:
            llama_cpp.llama_memory_seq_rm(self._mem, seq.seq_id, -1, -1)
            self._free_ids.add(seq.seq_id)

    def fail_all(self, error: BaseException, out: Out) -> None:
        """A decode failed beyond repair: every running sequence gets the error."""
        for seq in self.running:
            seq.sampler.close()
            out.append((seq.work, error))
        self.running.clear()
        self.clear()

    def clear(self) -> None:
        """Forget every cached prefix and empty the KV cache (no sequence may be running)."""
        assert not self.running
        while (victim := self.cache.pop_lru()) is not None:
            self._free_ids.add(victim)
        llama_cpp.llama_memory_clear(self._mem, True)

    def kv_usage(self) -> float:
        """Fraction of the cells in use, estimated from the tokens each sequence holds.

        Shared prefixes are counted once per holder, so this errs high; capped at 1.
        """
        held = sum(s.n_past - s.cached for s in self.running) + self.cache.cells()
        return min(1.0, held / self._cells)

    def close(self) -> None:
        for seq in self.running:
            seq.sampler.close()
        self.running.clear()
        llama_cpp.llama_batch_free(self._batch)
