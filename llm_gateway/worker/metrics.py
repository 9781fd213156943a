"""The worker's Prometheus metrics, in a registry of its own (never the global one).

Queue depth, activity, token totals and KV usage are read from the engine at scrape time, so
the request path only pays for the per-token histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llm_gateway.worker.engines.base import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], EngineStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        queue = GaugeMetricFamily("llm_worker_queue_depth", "Jobs waiting for the model.")
        active = GaugeMetricFamily("llm_worker_active_requests", "Jobs being generated.")
        prompt = CounterMetricFamily("llm_worker_prompt_tokens",
                                     "Prompt tokens of finished and running jobs.")
        generated = CounterMetricFamily("llm_worker_generated_tokens", "Tokens generated.")
        kv = GaugeMetricFamily("llm_worker_kv_cache_usage_ratio",
                               "Fraction of the KV cache holding tokens.")
        cached = GaugeMetricFamily("llm_worker_cached_sequences",
                                   "Finished sequences kept in the KV cache for prefix reuse.")
        rate = GaugeMetricFamily("llm_worker_tokens_per_second",
                                 "Tokens generated per second over the last few seconds.")
        warmup = GaugeMetricFamily(
            "llm_worker_warmup_seconds",
            "The decode done at load so the first request does not pay it (0: --no-warmup).")
        steps = CounterMetricFamily("llm_worker_steps", "Batched decode steps.")
        step_time = CounterMetricFamily("llm_worker_step_seconds",
                                        "Wall time of the decode steps.")
        decode_time = CounterMetricFamily(
            "llm_worker_decode_seconds",
            "Time in llama_decode and waiting for it; step minus decode minus overlap is the "
            "host work the decode waited for.")
        overlap_time = CounterMetricFamily(
            "llm_worker_overlap_seconds",
            "Host work done while a decode ran (--decode-overlap: on a GPU).")
        split = CounterMetricFamily(
            "llm_worker_split_steps",
            "Steps decoded in more than one pass (running sequences on non-consecutive ids).")
        compactions = CounterMetricFamily(
            "llm_worker_compactions",
            "Times running sequences were moved onto consecutive sequence ids.")
        offloaded = CounterMetricFamily(
            "llm_worker_backend_sampled_sequences",
            "Sequences whose tokens were sampled inside the decode (--backend-sampling).")
        if stats is not None:
            queue.add_metric([], stats.queue_depth)
            active.add_metric([], stats.active)
            prompt.add_metric([], stats.prompt_tokens_total)
            generated.add_metric([], stats.generated_tokens_total)
            if stats.kv_cache_usage is not None:
                kv.add_metric([], stats.kv_cache_usage)
            cached.add_metric([], stats.cached_sequences)
            if stats.tokens_per_second is not None:
                rate.add_metric([], stats.tokens_per_second)
            warmup.add_metric([], stats.warmup_seconds)
            steps.add_metric([], stats.steps_total)
            step_time.add_metric([], stats.step_seconds_total)
            decode_time.add_metric([], stats.decode_seconds_total)
            overlap_time.add_metric([], stats.overlap_seconds_total)
            split.add_metric([], stats.split_steps_total)
            compactions.add_metric([], stats.compactions_total)
            offloaded.add_metric([], stats.backend_sampled_total)
        yield from (queue, active, prompt, generated, kv, cached, rate, warmup, steps, step_time,
                    decode_time, overlap_time, split, compactions, offloaded)


class WorkerMetrics:
    def __init__(self, stats: Callable[[], EngineStats | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(stats))
        self.time_per_output_token = Histogram(
            "llm_worker_time_per_output_token_seconds",
            "Time between consecutive generated tokens of one request.",
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry)
        self.model_load_seconds = Gauge("llm_worker_model_load_seconds",
                                        "How long loading the model took.",
                                        registry=self.registry)
        self.up = Gauge("llm_worker_up", "1 once the model is loaded and serving.",
                        registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
