"""The continuous-batching engine: up to `parallel` sequences decoded together on one model.

One thread owns the llama.cpp context. It loops: admit waiting jobs while sequences are free,
run one step (`batch_scheduler.Scheduler.step`: one decode for every running sequence's
next token plus prompt chunks of new ones), and hand that step's events to the event loop in
one call. Jobs join and leave between any two steps. The scheduler reaches the model through
`decoder.Decoder` (`llama_decoder.LlamaDecoder` here).

The context is the `Llama`'s own, re-created with `n_seq_max` sequence ids
(`LlamaDecoder.batched`: the `Llama` constructor offers no such setting), so the `Llama`
still tokenizes and runs library chat handlers. Two KV layouts (`kv_unified`,
`batch_layout`):

- split (the default): every sequence id has a KV stream of its own, `n_ctx` cells each. A
  sequence attends over its own cells only, so its numbers do not depend on what else runs:
  greedy answers are the same alone or among others, and attention costs what it would alone.
  Memory: `n_ctx` x `n_seq_max` cells. llama.cpp decodes a batch in one pass per run of
  consecutive sequence ids, so the running sequences are kept on consecutive ids
  (`batch_layout.SplitLayout` with `batch_slots`: where a new one goes, and moving them
  together after ends leave gaps).
- unified: one pool of `n_ctx` cells for all sequences; shared prefixes share cells. Memory
  stays that of one context, but each token's attention spans the cells of every sequence
  (masked), which costs time, and sums in a different order: greedy answers may drift from
  the ones given alone after some tokens.

Library calls (llama-cpp-python's chat handlers) use the context as a single sequence, so they
run alone: the queue stops admitting behind one, it waits for the running sequences to finish,
and the KV cache (cached prefixes included) is emptied before and after. Embeddings never do
that: they run on a second context of the same model, on a thread of their own
(`ThreadedEngine._model_info`, `embedder`), while the sequences here go on decoding.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import llama_cpp

from llm_gateway.worker.engines.base import (
    EngineError,
    EngineStats,
    EventStream,
    Finished,
    Job,
)
from llm_gateway.worker.engines.batch_sampling import default_sample_threads
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out
from llm_gateway.worker.engines.jobs import JobStream, Work
from llm_gateway.worker.engines.llama_decoder import LlamaDecoder, max_sequences
from llm_gateway.worker.engines.threaded import Report, ThreadedEngine

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 10.0  # tokens/s in stats is measured over this much recent time


def default_cache_slots(parallel: int, unified: bool) -> int:
    """Sequence ids kept for cached prefixes besides the running ones, by default.

    Unified: as many as run (an idle id costs no memory, its cells are bounded by n_ctx).
    Split: none, since each would hold a whole stream of n_ctx cells: finished sequences stay
    cached on the ids that run them until a new sequence needs the id, as llama-server's slots
    do, and the worker holds the same KV memory as llama-server for the same context.
    """
    return parallel if unified else 0


class _Rate:
    """Generated tokens per second over the last RATE_WINDOW_SECONDS."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque()

    def mark(self, now: float, total: int) -> None:
        marks = self._marks
        if marks and now - marks[-1][0] < 0.25:
            return  # a few marks per second are plenty
        marks.append((now, total))
        while len(marks) > 2 and now - marks[0][0] > RATE_WINDOW_SECONDS:
            marks.popleft()

    def per_second(self, now: float) -> float:
        marks = list(self._marks)  # a copy: the engine thread appends meanwhile
        if len(marks) < 2 or now - marks[-1][0] > RATE_WINDOW_SECONDS:
            return 0.0
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


class BatchingEngine(ThreadedEngine):
    thread_name = "llama-batching"

    def __init__(self, load: Callable[[], llama_cpp.Llama], *, parallel: int = 8,
                 max_queue: int = 16, seed: int | None = None,
                 kv_unified: bool = False, embeddings: bool = False,
                 sample_threads: int | None = None, backend_sampling: bool = False,
                 overlap: bool | None = None, warmup: bool = True,
                 cache_slots: int | None = None) -> None:
        if parallel < 1:
            raise ValueError("parallel must be 1 or more")
        super().__init__(load, max_queue=max_queue, seed=seed, embeddings=embeddings,
                         warmup=warmup)
        self.parallel = parallel
        self.kv_unified = kv_unified
        self.sample_threads = sample_threads  # None: the decode's thread count
        self.backend_sampling = backend_sampling  # chains run inside the decode, where they can
        self.overlap = overlap  # host work during the decode; None: where the model is on a GPU
        self.cache_slots = cache_slots  # extra ids for cached prefixes (None: the default)
        # self._waiting holds jobs (run is None) and exclusive calls
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, Work] = {}
        self._scheduler: Scheduler | None = None
        self._rate = _Rate()
        self._step_seconds = 0.0
        self._extra_prompt_tokens = 0  # chat-handler calls
        self._extra_generated_tokens = 0

    # -- the engine thread ------------------------------------------------------------------

    def _main(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        try:
            llama = self._load()
            try:
                extra = self.cache_slots
                if extra is None:
                    extra = default_cache_slots(self.parallel, self.kv_unified)
                n_seq_max = self.parallel + extra
                if n_seq_max > max_sequences():
                    raise ValueError(f"parallel {self.parallel} is too many: llama.cpp takes "
                                     f"{max_sequences()} sequences")
                decoder, n_ctx = LlamaDecoder.batched(llama, n_seq_max, self.kv_unified,
                                                      self.backend_sampling, self.overlap)
                self._info = dataclasses.replace(self._model_info(llama, n_ctx), n_ctx=n_ctx)
                self._warm_up(llama)
            except BaseException:
                self._close_embedder()
                llama.close()
                raise
            threads = self.sample_threads or default_sample_threads(
                int(llama.context_params.n_threads))
            scheduler = self._scheduler = Scheduler(decoder, n_seq_max, n_ctx, self.kv_unified,
                                                    sample_threads=threads)
        except BaseException as exc:
            loop.call_soon_threadsafe(report, exc)
            return
        loop.call_soon_threadsafe(report, None)
        try:
            self._loop(llama, scheduler)
        finally:
            out: Out = []
            scheduler.cancel_all(out)
            _deliver_all(out)
            with self._cond:
                self._running.clear()
            self._refuse_waiting()
            self._scheduler = None
            scheduler.close()
            self._close_embedder()
            llama.close()

    def _loop(self, llama: llama_cpp.Llama, scheduler: Scheduler) -> None:
        while True:
            exclusive: Work | None = None
            admit: list[Work] = []
            with self._cond:
                while not self._waiting and not scheduler.running and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                # Sequences, not jobs, are bounded: a job with n choices takes n of them.
                taken = len(scheduler.running)
                while self._waiting and taken < self.parallel:
                    head = self._waiting[0]
                    if head.run is not None:  # an exclusive call: admit nothing behind it
                        if not scheduler.running and not admit:
                            exclusive = self._waiting.popleft()
                            self._running[exclusive.id] = exclusive
                        break
                    taken += self._jobs[head.id].n
                    if taken > self.parallel:
                        break  # it waits for enough to end (first come, first served)
                    admit.append(self._waiting.popleft())
                    self._running[head.id] = head
            if exclusive is not None:
                self._run_exclusive(llama, scheduler, exclusive)
                continue
            started = time.perf_counter()
            out: Out = []
            for work in admit:
                self._admit(scheduler, work, out)
            try:
                # (with a GPU, the last step's events go out while this step's decode runs)
                stepped = scheduler.step(out, functools.partial(self._publish, out))
            except Exception as exc:
                log.exception("a decode step failed")
                scheduler.fail_all(exc, out)
                stepped = True
            self._publish(out)
            if stepped:
                self._step_seconds += time.perf_counter() - started
                self._rate.mark(time.monotonic(), scheduler.generated_tokens)

    def _admit(self, scheduler: Scheduler, work: Work, out: Out) -> None:
        job = self._jobs[work.id]
        if work.cancelled:
            out.append((work, _cancelled_before_start(job)))
            return
        try:
            prompt = job.prompt if isinstance(job.prompt, list) else \
                self.info.tokenize(job.prompt, True, True)
            seed = job.seed if job.seed is not None else \
                self._seed if self._seed is not None else random.getrandbits(32)
            scheduler.admit(job, work, prompt, seed & 0xFFFFFFFF)
        except Exception as exc:
            out.append((work, exc))

    def _publish(self, out: Out) -> None:
        """Hand the events in `out` on (emptying it); drop the bookkeeping of works whose
        last event is among them."""
        if not out:
            return
        _deliver_all(out)
        ended = [work.id for work, item in out if isinstance(item, Finished | BaseException)]
        out.clear()
        if ended:
            with self._cond:
                for work_id in ended:
                    self._running.pop(work_id, None)
                    self._jobs.pop(work_id, None)

    def _run_exclusive(self, llama: llama_cpp.Llama, scheduler: Scheduler,
                       work: Work) -> None:
        try:
            if not work.cancelled:
                assert work.run is not None  # an exclusive call carries what it runs
                scheduler.clear()
                llama.reset()
                work.send(work.run(llama, work))
        except BaseException as exc:
            log.exception("call %s failed", work.id)
            work.send(exc)
        finally:
            scheduler.clear()
            llama.reset()
            with self._cond:
                self._running.pop(work.id, None)

    # -- the event loop side ----------------------------------------------------------------

    def _loaded(self) -> bool:
        return self._scheduler is not None

    def _free_slots(self) -> int:
        taken = sum(job.n if (job := self._jobs.get(work_id)) is not None else 1
                    for work_id in self._running)
        return max(0, self.parallel - taken)

    @property
    def max_choices(self) -> int:
        """n up to `parallel`: every choice is a sequence decoded with the others."""
        return self.parallel

    def _enqueue(self, work: Work, job: Job | None = None) -> None:
        # _cond's lock is an RLock: held across the checks and the append in the base class,
        # so the engine thread cannot take the work before its job is known.
        with self._cond:
            super()._enqueue(work)
            if job is not None:
                self._jobs[work.id] = job

    async def submit(self, job: Job) -> EventStream:
        if not 1 <= job.n <= self.max_choices:
            raise EngineError(f"n is {job.n}; this engine takes 1 to {self.max_choices}")
        events: asyncio.Queue = asyncio.Queue()
        # run=None marks a generation job: the scheduler runs it among the others.
        work = Work(job.id, None, events.put_nowait, asyncio.get_running_loop())
        self._enqueue(work, job)
        return JobStream(self, work, events)

    async def run_chat_handler(self, request: dict) -> dict:
        result = await self._call(lambda llama: llama.create_chat_completion(**request), "chat")
        usage = result.get("usage") or {}
        self._extra_prompt_tokens += usage.get("prompt_tokens", 0)
        self._extra_generated_tokens += usage.get("completion_tokens", 0)
        return result

    def cancel(self, job_id: str) -> None:
        with self._cond:
            for work in self._waiting:
                if work.id == job_id:
                    self._waiting.remove(work)
                    self._jobs.pop(job_id, None)
                    work.cancelled = True
                    return
            running = self._running.get(job_id)
            if running is not None:
                running.cancelled = True  # the engine thread ends it before its next step

    def stats(self) -> EngineStats:
        scheduler = self._scheduler
        if scheduler is None:
            return EngineStats(len(self._waiting), 0, self.max_queue, 0, 0, None,
                               parallel=self.parallel, warmup_seconds=self.warmup_seconds)
        return EngineStats(
            queue_depth=len(self._waiting),
            active=len(self._running),
            max_queue=self.max_queue,
            prompt_tokens_total=(scheduler.prompt_tokens + self._extra_prompt_tokens
                                 + self._embedded_tokens()),
            generated_tokens_total=scheduler.generated_tokens + self._extra_generated_tokens,
            kv_cache_usage=scheduler.kv_usage(),
            parallel=self.parallel,
            cached_sequences=len(scheduler.cache),
            tokens_per_second=self._rate.per_second(time.monotonic()),
            steps_total=scheduler.steps,
            step_seconds_total=self._step_seconds,
            decode_seconds_total=scheduler.decode_seconds,
            overlap_seconds_total=scheduler.overlap_seconds,
            split_steps_total=scheduler.split_steps,
            compactions_total=scheduler.compactions,
            backend_sampled_total=scheduler.offloaded,
            warmup_seconds=self.warmup_seconds,
        )

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            for work in self._running.values():
                work.cancelled = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


def _cancelled_before_start(job: Job) -> Finished:
    prompt = job.prompt if isinstance(job.prompt, list) else []
    return Finished("cancelled", len(prompt), 0, 0)


def _deliver_all(out: Out) -> None:
    """Hand a step's events to their event loops: one wake-up per loop, not one per event."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Work, Any]]] = \
        collections.defaultdict(list)
    for work, item in out:
        by_loop[work.loop].append((work, item))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Work, Any]]) -> None:
    for work, item in items:
        work.sink(item)
