"""The one-sequence-at-a-time engine: one thread owns the Llama and runs jobs in turn.

The event loop never waits on inference: llama.cpp releases the GIL while it decodes, and
each event crosses back with `loop.call_soon_threadsafe`. Waiting jobs sit in a bounded
queue (full: `QueueFull` at once, so the HTTP layer can answer 429 before any byte is sent).
A cancel flag is checked after every token, so a client that goes away frees the model at
once. Embeddings and library chat-handler calls queue behind the same thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp

from llm_gateway.worker.engines import llama_run
from llm_gateway.worker.engines.base import (
    Engine,
    EngineClosed,
    EngineError,
    EngineStats,
    Event,
    EventStream,
    Finished,
    Job,
    ModelInfo,
    Piece,
    QueueFull,
)

log = logging.getLogger(__name__)


class _Work:
    """A queued unit: `run(llama, work)` on the engine thread, its outcome sent to `loop`."""

    __slots__ = ("cancelled", "id", "loop", "run", "sink")

    def __init__(self, id: str, run: Callable[[llama_cpp.Llama, _Work], Any],
                 sink: Callable[[Any], None], loop: asyncio.AbstractEventLoop) -> None:
        self.id = id
        self.run = run
        self.sink = sink  # called on the loop with each event, the result, or an exception
        self.loop = loop
        self.cancelled = False  # set on the loop, read by the engine thread (a plain bool)

    def send(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self.loop.call_soon_threadsafe(self.sink, item)


class _JobStream(EventStream):
    def __init__(self, engine: SimpleEngine, work: _Work, events: asyncio.Queue) -> None:
        self._engine = engine
        self._work = work
        self._events = events
        self._done = False

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        item = await self._events.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if isinstance(item, Finished):
            self._done = True
        return item

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._engine.cancel(self._work.id)


class SimpleEngine(Engine):
    def __init__(self, load: Callable[[], llama_cpp.Llama], *, max_queue: int = 16,
                 seed: int | None = None) -> None:
        self._load = load
        self.max_queue = max_queue
        self._seed = seed  # for requests without one; None: random per request
        self._cond = threading.Condition()
        self._waiting: deque[_Work] = deque()
        self._active: _Work | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self._info: ModelInfo | None = None
        self._llama: llama_cpp.Llama | None = None
        self._vocab: llama_run.Vocab | None = None
        self._prompt_tokens = 0
        self._generated_tokens = 0

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineClosed("the model is not loaded")
        return self._info

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def report(error: BaseException | None) -> None:
            if ready.done():
                return
            if error is None:
                ready.set_result(None)
            else:
                ready.set_exception(error)

        self._thread = threading.Thread(target=self._main, args=(loop, report),
                                        name="llama-engine", daemon=True)
        self._thread.start()
        await ready

    # -- the engine thread ------------------------------------------------------------------

    def _main(self, loop: asyncio.AbstractEventLoop, report: Callable) -> None:
        try:
            llama = self._load()
            llama_cpp.llama_set_embeddings(llama._ctx.ctx, False)  # on only inside embed()
            self._llama = llama
            self._vocab = llama_run.Vocab(llama)
            self._info = _model_info(llama)
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
                    work.send(work.run(llama, work))
            except BaseException as exc:
                log.exception("job %s failed", work.id)
                llama.reset()  # the context may be half-written; start the next job afresh
                work.send(exc)
            finally:
                with self._cond:
                    self._active = None
        with self._cond:
            left, self._waiting = list(self._waiting), deque()
        for work in left:
            work.send(EngineClosed("the worker is shutting down"))
        self._llama = None
        llama.close()

    def _generate(self, job: Job, llama: llama_cpp.Llama, work: _Work) -> Finished:
        seed = self._seed if self._seed is not None else random.getrandbits(32)

        def emit(piece: Piece) -> None:
            self._generated_tokens += piece.token_id is not None
            work.send(piece)

        finished = llama_run.generate(llama, self._vocab, job, emit, lambda: work.cancelled,
                                      seed)
        self._prompt_tokens += finished.prompt_tokens
        return finished

    def _embed(self, inputs: Sequence[Sequence[int]], llama: llama_cpp.Llama) -> list:
        vectors = llama_run.embed(llama, inputs)
        self._prompt_tokens += sum(len(t) for t in inputs)
        return vectors

    def _chat_handler(self, request: dict, llama: llama_cpp.Llama) -> dict:
        result = llama.create_chat_completion(**request)
        usage = result.get("usage") or {}
        self._prompt_tokens += usage.get("prompt_tokens", 0)
        self._generated_tokens += usage.get("completion_tokens", 0)
        return result

    # -- the event loop side ----------------------------------------------------------------

    def _enqueue(self, work: _Work) -> None:
        with self._cond:
            if self._closing or self._llama is None:
                raise EngineClosed("the model is not loaded")
            # Only jobs that cannot start at once count against the queue's bound.
            if len(self._waiting) + (self._active is not None) >= self.max_queue + 1:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(work)
            self._cond.notify()

    async def submit(self, job: Job) -> EventStream:
        events: asyncio.Queue = asyncio.Queue()
        work = _Work(job.id, functools.partial(self._generate, job), events.put_nowait,
                     asyncio.get_running_loop())
        self._enqueue(work)
        return _JobStream(self, work, events)

    async def _call(self, fn: Callable[[llama_cpp.Llama], Any], name: str) -> Any:
        """Run `fn(llama)` in turn on the engine thread; no cancelling it once it runs."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future = loop.create_future()

        def settle(item: Any) -> None:
            if result.done():
                return
            if isinstance(item, BaseException):
                result.set_exception(item)
            else:
                result.set_result(item)

        work = _Work(f"{name}-{id(result):x}", lambda llama, _: fn(llama), settle, loop)
        self._enqueue(work)
        try:
            return await result
        finally:
            self.cancel(work.id)  # a no-op once it ran; drops it if the caller went away

    async def embed(self, inputs: Sequence[Sequence[int]]) -> tuple[list[Any], int]:
        if not self.info.embedding:
            raise EngineError("the model was not loaded with embeddings on")
        vectors = await self._call(functools.partial(self._embed, inputs), "embed")
        return vectors, sum(len(t) for t in inputs)

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
            prompt_tokens_total=self._prompt_tokens,
            generated_tokens_total=self._generated_tokens,
            kv_cache_usage=usage,
        )

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            if self._active is not None:
                self._active.cancelled = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


def _model_info(llama: llama_cpp.Llama) -> ModelInfo:
    model = llama._model

    def text_of(token: int) -> str:
        return model.token_get_text(token) if token >= 0 else ""

    def tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        return llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    embedding = bool(llama.context_params.embeddings)
    return ModelInfo(
        n_ctx=llama.n_ctx(),
        n_vocab=llama.n_vocab(),
        n_embd=llama.n_embd(),
        max_embedding_tokens=min(llama.n_batch, llama.n_ctx()),
        embedding=embedding,
        metadata=dict(llama.metadata),
        bos_token=text_of(llama.token_bos()),
        eos_token=text_of(llama.token_eos()),
        bos_id=llama.token_bos(),
        tokenize=tokenize,
        detokenize=lambda tokens: llama.detokenize(list(tokens)),
    )
