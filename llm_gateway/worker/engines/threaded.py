"""What the engines that own their Llama on one thread of their own share.

`ThreadedEngine.start` runs the subclass's `_main` on a daemon thread and returns once that
thread reports the model loaded (or raises what loading raised). `_enqueue` bounds the queue
the same way for all: only works that cannot start at once (`_free_slots`) count against
`max_queue`. `_call` queues a library call (a chat handler) and awaits its result.
Embeddings run beside, never in, that queue: `_model_info` gives them a context and a thread
of their own (`embedder.Embedder`), so chat is not held up by them.
"""

from __future__ import annotations

import asyncio
import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import llama_cpp

from llm_gateway.worker.engines import llama_run
from llm_gateway.worker.engines.base import (
    Engine,
    EngineClosed,
    EngineError,
    ModelInfo,
    QueueFull,
)
from llm_gateway.worker.engines.embedder import Embedder
from llm_gateway.worker.engines.jobs import Work
from llm_gateway.worker.engines.llama_embed import EmbeddingContext

# Called on the event loop by the engine thread: None once the model is loaded, else the error.
Report = Callable[[BaseException | None], None]


class ThreadedEngine(Engine):
    thread_name = "llama-engine"

    def __init__(self, load: Callable[[], llama_cpp.Llama], *, max_queue: int,
                 seed: int | None, embeddings: bool = False, warmup: bool = True) -> None:
        self._load = load
        self.warmup = warmup  # a decode before the engine reports ready (llama_run.warm_up)
        self.warmup_seconds = 0.0
        self.embeddings = embeddings  # whether to open an embedding context at load
        self.max_queue = max_queue
        self._seed = seed  # for requests without one; None: random per request
        self._cond = threading.Condition()
        self._waiting: deque[Work] = deque()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._info: ModelInfo | None = None
        self._embedder: Embedder | None = None

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
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        await ready

    def _warm_up(self, llama: llama_cpp.Llama) -> None:
        """On the engine thread, on the context jobs will use, before reporting ready."""
        if self.warmup:
            self.warmup_seconds = llama_run.warm_up(llama)

    def _model_info(self, llama: llama_cpp.Llama, n_ctx: int) -> ModelInfo:
        """On the engine thread, once loaded: open the embedding context (when asked for) and
        describe the model. `n_ctx`: the context one chat sequence gets.

        An embedding input may be as long as a batch, within the context: the same bound as
        a prompt chunk, and what the embedding context is sized for.
        """
        longest = 0
        if self.embeddings:
            longest = min(llama.n_batch, n_ctx)
            self._embedder = Embedder(EmbeddingContext(llama, longest), self.max_queue)
        return llama_run.model_info(llama, longest)

    def _close_embedder(self) -> None:
        """On the engine thread, before the model is freed."""
        embedder, self._embedder = self._embedder, None
        if embedder is not None:
            embedder.close()

    def _embedded_tokens(self) -> int:
        embedder = self._embedder
        return embedder.tokens_total if embedder is not None else 0

    async def embed(self, inputs: Sequence[Sequence[int]]) -> tuple[list[Any], int]:
        embedder = self._embedder
        if embedder is None:
            raise EngineError("this engine was started without embeddings")
        vectors = await embedder.embed(inputs)
        return vectors, sum(len(t) for t in inputs)

    @abstractmethod
    def _main(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        """The engine thread: load the model, `report` through `loop`, then serve the queue."""

    @abstractmethod
    def _loaded(self) -> bool:
        """Whether the engine thread has the model and serves the queue (under `_cond`)."""

    @abstractmethod
    def _free_slots(self) -> int:
        """How many works could start at once if queued now: idle slots (under `_cond`)."""

    def _enqueue(self, work: Work) -> None:
        """Queue `work` for the engine thread; raises `EngineClosed` or `QueueFull`."""
        with self._cond:
            if self._closing or not self._loaded():
                raise EngineClosed("the model is not loaded")
            # Only jobs that cannot start at once count against the queue's bound.
            if len(self._waiting) >= self.max_queue + self._free_slots():
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(work)
            self._cond.notify()

    async def _call(self, fn: Callable[[llama_cpp.Llama], Any], name: str) -> Any:
        """Run `fn(llama)` on the engine thread when `_enqueue`'s order gets to it.

        No cancelling it once it runs; a caller that goes away before that drops it.
        """
        loop = asyncio.get_running_loop()
        result: asyncio.Future = loop.create_future()

        def settle(item: Any) -> None:
            if result.done():
                return
            if isinstance(item, BaseException):
                result.set_exception(item)
            else:
                result.set_result(item)

        work = Work(f"{name}-{id(result):x}", lambda llama, _: fn(llama), settle, loop)
        self._enqueue(work)
        try:
            return await result
        finally:
            self.cancel(work.id)  # a no-op once it ran; drops it if the caller went away

    def _refuse_waiting(self) -> None:
        """On the engine thread, at shutdown: fail every work still waiting."""
        with self._cond:
            left, self._waiting = list(self._waiting), deque()
        for work in left:
            work.send(EngineClosed("the worker is shutting down"))
