"""The worker's one `WorkerState`: status, engine and prompter, loaded in the background.

The server listens before the model is loaded, so a supervisor polling /health sees
"loading" at once, then "ok" (or "error" with the reason) when loading ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.tracing.base import NO_TRACER, Tracer
from llm_gateway.tracing.build import build_tracer
from llm_gateway.web.spec import load_spec
from llm_gateway.web.validation import Validator, compile_request_validators
from llm_gateway.worker.config import WorkerConfig
from llm_gateway.worker.engines.base import Engine, EngineStats
from llm_gateway.worker.metrics import WorkerMetrics
from llm_gateway.worker.models import load_llama, resolve_source, served_name_for
from llm_gateway.worker.prompts import Prompter
from llm_gateway.worker.templates import ChatRenderer

log = logging.getLogger("llm_gateway.worker")

EngineFactory = Callable[[WorkerConfig, Path], Engine]


def simple_engine(config: WorkerConfig, path: Path) -> Engine:
    from llm_gateway.worker.engines.simple import SimpleEngine

    return SimpleEngine(lambda: load_llama(path, config), max_queue=config.max_queue,
                        seed=config.seed, embeddings=config.embeddings, warmup=config.warmup)


def batching_engine(config: WorkerConfig, path: Path) -> Engine:
    from llm_gateway.worker.engines.batching import BatchingEngine

    return BatchingEngine(lambda: load_llama(path, config), parallel=config.parallel,
                          max_queue=config.max_queue, seed=config.seed,
                          kv_unified=config.kv_unified, embeddings=config.embeddings,
                          sample_threads=config.sample_threads,
                          backend_sampling=config.backend_sampling,
                          overlap={"on": True, "off": False}.get(config.decode_overlap),
                          warmup=config.warmup, cache_slots=config.cache_slots)


ENGINES: dict[str, EngineFactory] = {"simple": simple_engine, "batching": batching_engine}


class WorkerState:
    def __init__(self, config: WorkerConfig, engine_factory: EngineFactory | None = None,
                 validators: dict[str, Validator] | None = None) -> None:
        self.config = config
        self.name = config.served_name or served_name_for(config.model)
        self.status = "loading"  # -> "ok" | "error"
        self.error: str | None = None
        self.created = int(time.time())
        self.engine: Engine | None = None
        self.prompter: Prompter | None = None
        self.metrics = WorkerMetrics(self.stats)
        self.validators = validators if validators is not None else \
            compile_request_validators(load_spec())
        self._engine_factory = engine_factory or ENGINES[config.engine]
        # Spans for traced requests (--otlp-endpoint); the no-op tracer otherwise.
        self.tracer: Tracer = build_tracer(config.tracing) if config.tracing else NO_TRACER

    async def load(self) -> None:
        started = time.monotonic()
        try:
            path = await asyncio.to_thread(resolve_source, self.config.model)
            engine = self._engine_factory(self.config, path)
            self.engine = engine
            await engine.start()
            renderer = ChatRenderer(engine.info, chat_format=self.config.chat_format,
                                    chat_template=self.config.chat_template)
            self.prompter = Prompter(engine.info, renderer, engine.max_choices,
                                     tool_format=self.config.tool_format)
        except Exception as exc:
            self.status, self.error = "error", str(exc)
            log.error("the model could not be loaded: %s", exc)
            return
        seconds = time.monotonic() - started
        self.metrics.model_load_seconds.set(seconds)
        self.metrics.up.set(1)
        self.status = "ok"
        log.info("serving %s as %r (ready %.2f s after start of loading)",
                 self.config.model, self.name, seconds)

    def ready(self) -> tuple[Engine, Prompter]:
        if self.status == "ok" and self.engine is not None and self.prompter is not None:
            return self.engine, self.prompter
        if self.status == "loading":
            raise ServiceUnavailable("The model is still loading; retry shortly.",
                                     code="model_loading", headers={"Retry-After": "1"})
        raise ServiceUnavailable(f"The model failed to load: {self.error}",
                                 code="model_load_failed")

    def stats(self) -> EngineStats | None:
        return self.engine.stats() if self.status == "ok" and self.engine is not None else None

    def health(self) -> dict:
        stats = self.stats()
        info = self.engine.info if stats is not None and self.engine is not None else None
        body = {
            "status": self.status,
            "model": self.name,
            "source": self.config.model,
            "queue_depth": stats.queue_depth if stats else 0,
            "active": stats.active if stats else 0,
            "max_queue": self.config.max_queue,
            "engine": self.config.engine,
            "parallel": stats.parallel if stats else None,
            "cached_sequences": stats.cached_sequences if stats else 0,
            "kv_cache_usage": stats.kv_cache_usage if stats else None,
            "tokens_per_second": stats.tokens_per_second if stats else None,
            "n_ctx": info.n_ctx if info else (self.config.n_ctx or None),
            "embeddings": self.config.embeddings,
        }
        if self.error:
            body["error"] = self.error
        return body

    async def close(self) -> None:
        self.metrics.up.set(0)
        if self.engine is not None:
            await self.engine.close()
        if self.tracer.enabled:  # the last spans out (exporting blocks: a thread)
            await asyncio.to_thread(self.tracer.shutdown)
