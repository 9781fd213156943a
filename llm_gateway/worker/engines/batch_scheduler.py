"""The batching engine's step loop: many sequences, one decode per step.

Each step builds one batch: the next token of every generating sequence first (so they all
advance every step), then prompt chunks of sequences still reading their prompt, first come
first served, until `n_batch` tokens. A long prompt is thus fed over several steps and never
stalls the others for more than one batch. After the decode each sequence whose logits were
asked for samples with its own sampler chain; the chains of one step run on several threads
(batch_sampling), and the tokens are then taken in order on this one.

Each sequence may grow up to `n_ctx` tokens. With a split KV cache every sequence id has a
stream of `n_ctx` cells, so it never runs out. With a unified one, `n_ctx` cells are shared:
when a decode finds no free cells, cached prefixes are evicted (least recently used first);
when none are left, the longest running sequence ends with "length": the context is full,
as it would be for a single sequence.

A job with n > 1 choices takes n sequence ids at admission. Only the first feeds the
prompt; in the step that evaluates its last prompt token, its cells are copied to the others
(`Decoder.copy`, before anything else is written to them) and every choice samples from those
same logits with its own sampler (seed + i). From then on each is a sequence like any other;
cancelling the job ends them all.

The model is behind `decoder.Decoder` and the KV layout behind `batch_layout.Layout`: this
module decides what runs, those carry it out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np

from llm_gateway.worker.engines.base import Job
from llm_gateway.worker.engines.batch_layout import Layout, SplitLayout, UnifiedLayout
from llm_gateway.worker.engines.batch_prefix import PrefixCache
from llm_gateway.worker.engines.batch_sampling import StepSampler
from llm_gateway.worker.engines.batch_sequence import Choices, Out, Sequence, Taken
from llm_gateway.worker.engines.decoder import Decoder, Sampler, Span

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, decoder: Decoder, n_seq_max: int, n_ctx: int, unified: bool,
                 sample_threads: int = 1) -> None:
        self.decoder = decoder
        self.sampling = StepSampler(sample_threads)
        self.n_ctx = n_ctx  # per sequence
        self.n_batch = decoder.n_batch
        self.running: list[Sequence] = []
        self.cache = PrefixCache()
        kind = UnifiedLayout if unified else SplitLayout
        self.layout: Layout = kind(decoder, self.cache, n_seq_max, n_ctx)
        # Counters, read by stats() from the event loop's thread (plain numbers).
        self.steps = 0
        self.split_steps = 0  # split cache: steps whose sequences took more than one pass
        self.decode_seconds = 0.0  # in the decoder's calls: decode, and waiting for it
        self.overlap_seconds = 0.0  # host work done while a decode ran (decoder.overlaps)
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.offloaded = 0  # sequences whose tokens were picked inside the decode
        # Events not yet in an `out`: tokens whose text is still to be made, ended sequences
        # (their end events), in order. With an overlapping decoder they wait for the next
        # decode to be under way.
        self._pending: list[Taken | Sequence] = []

    @property
    def compactions(self) -> int:
        """Split cache: times running sequences were moved together."""
        return self.layout.compactions

    # -- admission --------------------------------------------------------------------------

    def admit(self, job: Job, work: object, prompt: list[int], seed: int) -> Sequence:
        """Start a sequence: take an id, copy the longest held prefix, build its sampler.

        With `job.n` > 1, the other choices take an id each too (next to it) and wait for
        its prompt; the leader is returned. Raises ValueError (prompt too long, bad
        grammar); nothing is held then.
        """
        if not prompt or len(prompt) + 1 > self.n_ctx:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit a context of "
                             f"{self.n_ctx}")
        samplers = self._samplers(job, seed)
        job.began_ns = time.time_ns()  # its prompt is evaluated from the next step on
        sampler = samplers[0]
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
        if sampler.attach(seq_id):
            self.offloaded += 1
        self.running.append(seq)
        self.prompt_tokens += len(prompt)
        if len(samplers) > 1:
            group = seq.group = Choices()
            group.add(seq)
            for index, other in enumerate(samplers[1:], 1):
                other_id = self.layout.place([s.seq_id for s in self.running], -1, 0)
                follower = Sequence(job, work, prompt, other_id, 0, other, self.n_ctx, index)
                follower.group, follower.waiting_on = group, seq
                group.add(follower)
                self.running.append(follower)
        return seq

    def _samplers(self, job: Job, seed: int) -> list[Sampler]:
        """One sampler chain per choice, choice i seeded with seed + i.

        A chain may run inside the decode when its sequence's logits have no other reader:
        not with log-probabilities (read from them), nor with n > 1 choices (the others
        sample from the leader's last prompt logits).
        """
        samplers: list[Sampler] = []
        offload = job.n <= 1 and not job.logprobs
        try:
            for i in range(max(1, job.n)):
                samplers.append(self.decoder.sampler(job.sampling, job.grammar,
                                                     (seed + i) & 0xFFFFFFFF, offload))
        except BaseException:
            for sampler in samplers:
                sampler.close()
            raise
        return samplers

    # -- one step ---------------------------------------------------------------------------

    def step(self, out: Out, while_decoding: Callable[[], None] | None = None) -> bool:
        """Cancel, batch, decode and sample once; False when there was nothing to decode.

        Events go to `out`. With a decoder whose decode runs on after the call (`overlaps`),
        the text of the last step's tokens is made while this step's decode runs, and
        `while_decoding` is then called (to hand `out` on); this step's own text follows in
        the next step, or in `flush`. Otherwise everything is in `out` when this returns.
        """
        self._release_each([s for s in self.running if s.work.cancelled], "cancelled")
        if not self.decoder.overlaps:
            self.flush(out)  # (their ends first, as they happened)
        self.layout.arrange(self.running)
        while True:
            spans, plan = self._fill()
            if not plan:
                self.flush(out)
                return False
            started = time.perf_counter()
            done = self.decoder.decode(spans)
            self.decode_seconds += time.perf_counter() - started
            if done:
                break
            self._make_room()
        if self.decoder.overlaps:
            started = time.perf_counter()
            self._show(out)  # the GPU decodes meanwhile
            if while_decoding is not None:
                while_decoding()
            self.overlap_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self.decoder.wait()
        self.decode_seconds += time.perf_counter() - started
        self.steps += 1
        picks: list[tuple[Sequence, int]] = []
        ended: list[Sequence] = []
        for seq, count, index in plan:
            seq.n_past += count
            if index < 0:
                continue  # a prompt chunk that is not the last: nothing to sample yet
            if seq.finish is not None:
                ended.append(seq)  # a stop string in its last token, seen during the decode
                continue
            for choice in [seq, *self._fork(seq)]:
                choice.next_token = None
                if choice.wants_token():
                    picks.append((choice, index))
                else:
                    ended.append(choice)
        if picks:
            decoder = self.decoder
            decoder.logits_ready()
            tokens = self.sampling.sample([(choice.sampler, index) for choice, index in picks])
            overlaps = decoder.overlaps
            for (choice, index), token in zip(picks, tokens, strict=True):
                taken = choice.take(decoder, token, index)
                if taken is not None:
                    self.generated_tokens += 1
                    if overlaps:
                        self._pending.append(taken)  # its text: during the next decode
                    else:
                        choice.show(decoder, token, taken[2], out)
                if choice.finish is not None:
                    ended.append(choice)
        self._release_each(ended)
        if not self.decoder.overlaps or not self.running:
            self.flush(out)  # (with nothing left running, no next decode would carry it)
        return True

    def flush(self, out: Out) -> None:
        """Queue every event still held (the text of the last step's tokens, ends) in `out`,
        and end what a stop string in that text ended. No decode may be under way."""
        while self._pending:
            self._release_each(self._show(out))

    def _show(self, out: Out) -> list[Sequence]:
        """Queue the held events in the order they happened (tokens' text, ends); the
        sequences a stop string ended."""
        pending, self._pending = self._pending, []
        stopped: list[Sequence] = []
        decoder = self.decoder
        for item in pending:
            if isinstance(item, tuple):
                seq, token, logprob = item
                if seq.show(decoder, token, logprob, out):
                    stopped.append(seq)
            else:
                item.announce_end(out)
        return stopped

    def _fork(self, leader: Sequence) -> list[Sequence]:
        """The choices waiting on `leader`, now given its evaluated prompt (none usually).

        A whole-sequence copy: the leader holds exactly its prompt at this point, and a
        split cache copies only whole streams.
        """
        if leader.group is None:
            return []
        waiting = [s for s in self.running if s.waiting_on is leader]
        for seq in waiting:
            self.decoder.copy(leader.seq_id, seq.seq_id, -1, -1)
            seq.fork(leader)
        return waiting

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

    def _make_room(self) -> None:
        """The cache is full: evict one cached prefix, else end the longest sequence."""
        if self.layout.evict_lru():
            return
        # (choices waiting for their prompt hold no cells: ending one would free nothing)
        longest = max((s for s in self.running if s.waiting_on is None),
                      key=lambda s: s.n_past)
        log.warning("KV cache full with %d sequences: ending the longest (%d tokens)",
                    len(self.running), longest.n_past)
        self._release(longest, "length")

    # -- ends -------------------------------------------------------------------------------

    def _release(self, seq: Sequence, reason: str | None = None) -> None:
        """End a sequence; keep its KV cells as a cached prefix (or free them). Its end
        events follow its last text.

        Choices still waiting on it end with it: they will never get its prompt.
        """
        self.running.remove(seq)
        waiting = [s for s in self.running if s.waiting_on is seq] \
            if seq.group is not None else []
        seq.end(reason)
        self._pending.append(seq)
        if seq.n_past > 0:
            self.cache.put(seq.seq_id, seq.cached_tokens())
        else:
            self.layout.free(seq.seq_id)
        for other in waiting:
            self._release(other, seq.finish)

    def _release_each(self, seqs: list[Sequence], reason: str | None = None) -> None:
        """Release those of `seqs` still running (a leader's release ends the choices waiting
        on it, which may be among them)."""
        for seq in seqs:
            if seq in self.running:
                self._release(seq, reason)

    def cancel_all(self, out: Out) -> None:
        """End every sequence "cancelled" (the engine is closing), after the events held."""
        with contextlib.suppress(Exception):
            self.decoder.wait()
        self.flush(out)
        self._release_each(list(self.running), "cancelled")
        self.flush(out)

    def fail_all(self, error: BaseException, out: Out) -> None:
        """A decode failed beyond repair: every running job gets the error (once), after
        the events it was owed. A sequence whose held text holds its stop string ended
        before the failure: it finishes as it would have."""
        with contextlib.suppress(Exception):
            self.decoder.wait()
        self.flush(out)
        told: list[object] = []
        for seq in self.running:
            seq.sampler.close()
            if not any(work is seq.work for work in told):
                told.append(seq.work)
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
        self.sampling.close()
        self.decoder.close()
