"""The batching engine's step loop: many sequences, one decode per step.

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

The model is behind `decoder.Decoder` and the KV layout behind `batch_layout.Layout`: this
module decides what runs, those carry it out.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from llm_gateway.worker.engines.base import Job
from llm_gateway.worker.engines.batch_layout import Layout, SplitLayout, UnifiedLayout
from llm_gateway.worker.engines.batch_prefix import PrefixCache
from llm_gateway.worker.engines.batch_sequence import Out, Sequence
from llm_gateway.worker.engines.decoder import Decoder, Span

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, decoder: Decoder, n_seq_max: int, n_ctx: int, unified: bool) -> None:
        self.decoder = decoder
        self.n_ctx = n_ctx  # per sequence
        self.n_batch = decoder.n_batch
        self.running: list[Sequence] = []
        self.cache = PrefixCache()
        kind = UnifiedLayout if unified else SplitLayout
        self.layout: Layout = kind(decoder, self.cache, n_seq_max, n_ctx)
        # Counters, read by stats() from the event loop's thread (plain numbers).
        self.steps = 0
        self.split_steps = 0  # split cache: steps whose sequences took more than one pass
        self.decode_seconds = 0.0
        self.prompt_tokens = 0
        self.generated_tokens = 0

    @property
    def compactions(self) -> int:
        """Split cache: times running sequences were moved together."""
        return self.layout.compactions

    # -- admission --------------------------------------------------------------------------

    def admit(self, job: Job, work: object, prompt: list[int], seed: int) -> Sequence:
        """Start a sequence: take an id, copy the longest held prefix, build its sampler.

        Raises ValueError (prompt too long, bad grammar); nothing is held then.
        """
        if not prompt or len(prompt) + 1 > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit a context of "
                             f"{self.n_ctx}")
        sampler = self.decoder.sampler(job.sampling, job.grammar, seed)
        source, common = -1, 0
        if job.seed is None:
            # A seeded request is recomputed from scratch, as on the simple engine: reused
            # cells can differ from recomputed ones in the last bits, enough to flip a
            # sampled token, and a seed promises the same answer every time.
            running = [(s.seq_id, np.asarray(s.tokens[:s.n_past], dtype=np.intc))
                       for s in self.running if s.n_past > 0]
            source, common = self.cache.best(np.asarray(prompt, dtype=np.intc), running)
        seq_id = self.layout.place([s.seq_id for s in self.running], source, common)
        seq = Sequence(job, work, prompt, seq_id, common, sampler, self.n_ctx)
        self.running.append(seq)
        self.prompt_tokens += len(prompt)
        return seq

    # -- one step ---------------------------------------------------------------------------

    def step(self, out: Out) -> bool:
        """Cancel, batch, decode and sample once; False when there was nothing to decode."""
        for seq in [s for s in self.running if s.work.cancelled]:
            self._release(seq, out, "cancelled")
        self.layout.arrange(self.running)
        while True:
            spans, plan = self._fill()
            if not plan:
                return False
            started = time.perf_counter()
            done = self.decoder.decode(spans)
            self.decode_seconds += time.perf_counter() - started
            if done:
                break
            self._make_room(out)
        self.steps += 1
        for seq, count, index in plan:
            seq.n_past += count
            if index < 0:
                continue  # a prompt chunk that is not the last: nothing to sample yet
            seq.next_token = None
            before = seq.generated
            seq.accept(self.decoder, index, out)
            self.generated_tokens += seq.generated - before
            if seq.finish is not None:
                self._release(seq, out)
        return True

    def _fill(self) -> tuple[list[Span], list[tuple[Sequence, int, int]]]:
        """This step's batch, and (sequence, tokens added, logits index or -1) for each.

        Every generating sequence's next token, then prompt chunks first come, first served,
        up to n_batch tokens; in sequence-id order, so that llama.cpp's micro-batches (runs
        of consecutive ids, see batch_slots) are as few as the ids allow.
        """
        spans: list[tuple[Sequence, Span]] = []
        n = 0
        for seq in self.running:
            if seq.next_token is not None:
                spans.append((seq, Span(seq.seq_id, seq.n_past, [seq.next_token], True)))
                n += 1
        for seq in self.running:  # admission order: the oldest prompt goes first
            if n >= self.n_batch:
                break
            if seq.prefilling:
                chunk = seq.prompt_chunk(self.n_batch - n)
                ends = seq.n_past + len(chunk) == len(seq.prompt)
                spans.append((seq, Span(seq.seq_id, seq.n_past, chunk, ends)))
                n += len(chunk)
        if len(spans) > 1:
            spans.sort(key=lambda part: part[1].seq_id)
            if self.layout.splits(span.seq_id for _, span in spans):
                self.split_steps += 1
        plan: list[tuple[Sequence, int, int]] = []
        i = 0
        for seq, span in spans:
            i += len(span.tokens)
            plan.append((seq, len(span.tokens), i - 1 if span.logits else -1))
        return [span for _, span in spans], plan

    def _make_room(self, out: Out) -> None:
        """The cache is full: evict one cached prefix, else end the longest sequence."""
        if self.layout.evict_lru():
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
            self.layout.free(seq.seq_id)

    def fail_all(self, error: BaseException, out: Out) -> None:
        """A decode failed beyond repair: every running sequence gets the error."""
        for seq in self.running:
            seq.sampler.close()
            out.append((seq.work, error))
            self.layout.free_ids.add(seq.seq_id)  # its cells go with the clear below
        self.running.clear()
        self.clear()

    def clear(self) -> None:
        """Forget every cached prefix and empty the KV cache (no sequence may be running)."""
        assert not self.running
        self.layout.clear()

    def kv_usage(self) -> float:
        """Fraction of the cells in use, estimated from the tokens each sequence holds.

        Shared prefixes are counted once per holder, so this errs high; capped at 1.
        """
        held = sum(s.n_past - s.cached for s in self.running) + self.cache.cells()
        return min(1.0, held / self.layout.cells)

    def close(self) -> None:
        for seq in self.running:
            seq.sampler.close()
        self.running.clear()
        self.decoder.close()
