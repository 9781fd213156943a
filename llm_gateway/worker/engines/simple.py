"""The one-sequence-at-a-time engine: one thread owns the Llama and runs jobs in turn.

The event loop never waits on inference: llama.cpp releases the GIL while it decodes, and
each event crosses back with `loop.call_soon_threadsafe`. Waiting jobs sit in a bounded
queue (full: `QueueFull` at once, so the HTTP layer can answer 429 before any byte is sent).
A cancel flag is checked after every token, so a client that goes away frees the model at
once. Library chat-handler calls queue behind the same thread; embeddings run beside it, on
a context and a thread of their own (`ThreadedEngine._model_info`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import cast

import llama_cpp

from llm_gateway.worker.engines import llama_run
from llm_gateway.worker.engines.base import (
    EngineError,
    EngineStats,
    EventStream,
    Finished,
    Job,
    Piece,
)
from llm_gateway.worker.engines.jobs import JobStream, Work
from llm_gateway.worker.engines.threaded import Report, ThreadedEngine

log = logging.getLogger(__name__)


class SimpleEngine(ThreadedEngine):
    thread_name = "llama-engine"

    def __init__(self, load: Callable[[], llama_cpp.Llama], *, max_queue: int = 16,
                 seed: int | None = None, embeddings: bool = False, warmup: bool = True) -> None:
        super().__init__(load, max_queue=max_queue, seed=seed, embeddings=embeddings,
                         warmup=warmup)
        self._active: Work | None = None
        self._llama: llama_cpp.Llama | None = None
        self._vocab: llama_run.Vocab | None = None
        self._prompt_tokens = 0
        self._generated_tokens = 0

    # -- the engine thread ------------------------------------------------------------------

    def _main(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        try:
            llama = self._load()
            try:
                self._info = self._model_info(llama, llama.n_ctx())
                self._warm_up(llama)
            except BaseException:
                self._close_embedder()
                llama.close()
                raise
            self._vocab = llama_run.Vocab(llama)
            self._llama = llama
        except BaseException as exc:
            loop.call_soon_threadsafe(report, exc)
            return
        loop.call_soon_threadsafe(report, None)
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if self._closing:
                    break
                work = self._active = self._waiting.popleft()
            try:
                if not work.cancelled:
                    if work.run is None:  # only the batching engine queues jobs it runs itself
                        raise TypeError(f"job {work.id} has nothing to run")
                    work.send(work.run(llama, work))
            except BaseException as exc:
                log.exception("job %s failed", work.id)
                llama.reset()  # the context may be half-written; start the next job afresh
                work.send(exc)
            finally:
                with self._cond:
                    self._active = None
        self._refuse_waiting()
        self._llama = None
        self._close_embedder()
        llama.close()

    def _generate(self, job: Job, llama: llama_cpp.Llama, work: Work) -> Finished:
        seed = self._seed if self._seed is not None else random.getrandbits(32)
        job.began_ns = time.time_ns()

        def emit(piece: Piece) -> None:
            self._generated_tokens += piece.token_id is not None
            work.send(piece)

        vocab = self._vocab
        if vocab is None:  # set in _main before any job runs
            raise RuntimeError("the model is not loaded")
        finished = llama_run.generate(llama, vocab, job, emit, lambda: work.cancelled, seed)
        self._prompt_tokens += finished.prompt_tokens
        return finished

    def _chat_handler(self, request: dict, llama: llama_cpp.Llama) -> dict:
        # A whole response: the worker never asks the chat handler to stream.
        result = cast(dict, llama.create_chat_completion(**request))
        usage = result.get("usage") or {}
        self._prompt_tokens += usage.get("prompt_tokens", 0)
        self._generated_tokens += usage.get("completion_tokens", 0)
        return result

    # -- the event loop side ----------------------------------------------------------------

    def _loaded(self) -> bool:
        return self._llama is not None

    def _free_slots(self) -> int:
        return int(self._active is None)

    async def submit(self, job: Job) -> EventStream:
        if job.n != 1:
            raise EngineError("this engine generates one choice per job")
        events: asyncio.Queue = asyncio.Queue()
        work = Work(job.id, functools.partial(self._generate, job), events.put_nowait,
                    asyncio.get_running_loop())
        self._enqueue(work)
        return JobStream(self, work, events)

    async def run_chat_handler(self, request: dict) -> dict:
        return await self._call(functools.partial(self._chat_handler, request), "chat")

    def cancel(self, job_id: str) -> None:
        with self._cond:
            for work in self._waiting:
                if work.id == job_id:
                    self._waiting.remove(work)
                    work.cancelled = True
                    return
            if self._active is not None and self._active.id == job_id:
                self._active.cancelled = True

    def stats(self) -> EngineStats:
        llama = self._llama
        usage = llama.n_tokens / llama.n_ctx() if llama is not None else None
        return EngineStats(
            queue_depth=len(self._waiting),
            active=int(self._active is not None),
            max_queue=self.max_queue,
            prompt_tokens_total=self._prompt_tokens + self._embedded_tokens(),
            generated_tokens_total=self._generated_tokens,
            kv_cache_usage=usage,
            warmup_seconds=self.warmup_seconds,
        )

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            if self._active is not None:
                self._active.cancelled = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

