"""A local model as residency sees it (backends/residency_memory.py's `Hosted`), without
processes: it is "ready" some time after its workers start, or fails, as the test says.

The residency rules are tested over these in tests/backends/test_residency*.py; the same rules
over real workers in tests/local/test_local_on_demand*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from prometheus_client import CollectorRegistry

from llm_gateway.backends.residency import Residency
from llm_gateway.config import LocalConfig
from llm_gateway.config.builder import Builder
from llm_gateway.config.placement import PlacementConfig
from llm_gateway.metrics.local_models import LocalModelMetrics

_pids = itertools.count(70_000)


class FakeModel:
    def __init__(self, name: str, *, load_seconds: float = 0.02, **settings: Any) -> None:
        self.name = name
        self.cfg = LocalConfig(**{"model": f"/nowhere/{name}.gguf", "memory_mib": 100,
                                  **settings}, name=name)
        self.load_seconds = load_seconds
        self.fail: str | None = None  # the next start fails with this
        self.ready = 0
        self.busy = 0  # requests on its workers
        self.starts: list[list[int | None]] = []  # the GPUs of each start
        self.stops = 0
        self.pids: list[int] = []
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.failure: str | None = None

    async def start_workers(self, gpus: list[int | None]) -> None:
        self.starts.append(gpus)
        self.pids = [next(_pids) for _ in gpus]
        self._timer = asyncio.get_running_loop().call_later(self.load_seconds, self._up)

    def _up(self) -> None:
        if self.fail is not None:
            self.failure, self.fail = self.fail, None
        else:
            self.ready = len(self.pids)
        self._changed.set()
        self._changed = asyncio.Event()

    async def stop_workers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.stops += 1
        self.ready, self.pids, self.failure = 0, [], None

    def workers_ready(self) -> int:
        return self.ready

    def start_failure(self) -> str | None:
        return self.failure

    def outstanding(self) -> int:
        return self.busy

    def worker_pids(self) -> list[int]:
        return self.pids

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


async def residency_of(*models: FakeModel, nvml_lib: Any = None,
                       **placement: Any) -> tuple[Residency, LocalModelMetrics]:
    """A started residency over ``models``, its metrics in a registry of their own."""
    settings = {"nvml": "off" if nvml_lib is None else "auto", **placement}
    # Built as the loader builds it, so the keys are checked as in a config file.
    builder = Builder()
    built = builder.build(PlacementConfig, settings, "placement")
    assert not builder.problems, builder.problems
    residency = Residency(built, nvml_lib=nvml_lib)
    metrics = LocalModelMetrics(CollectorRegistry())
    residency.watch(metrics)
    for model in models:
        residency.add(model)
    await residency.start()
    for model in models:
        await residency.start_model(model.name)
    return residency, metrics


def sample(metrics: LocalModelMetrics, name: str, **labels: str) -> float:
    """A sample's value (0 when it was never set)."""
    for metric in (metrics.loads, metrics.unloads, metrics.evictions, metrics.loaded,
                   metrics.state, metrics.memory, metrics.device_memory, metrics.load_seconds):
        for family in metric.collect():
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
    return 0.0
