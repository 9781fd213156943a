"""The memory side of residency: each model's need, the budget, what is booked, what the
workers really use, and the metrics and log words for all of it.

- **Need** (per worker): the entry's ``memory_mib`` when set (on its GPU when it offloads
  layers, else in host memory); else the GGUF estimate (memory.py), raised to the most its
  workers were seen using in an earlier load. Unknown (an ``hf://`` file not downloaded yet,
  an unreadable file): nothing is booked until its workers report.
- **Budget**: `placement.gpus` (a GPU without ``memory_mib``: NVML's total less
  ``headroom_mib``), else every GPU NVML lists; ``cpu_memory_mib`` for host memory. What other
  programs hold on a GPU (NVML's used, less our workers' share) is taken off its budget.
- **Used**: every few seconds, each worker's resident set size (/proc) and, with NVML, its
  GPU memory. A model using more than it booked (no ``memory_mib``) has its booking raised to
  that, so the next plan counts what is really taken.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_gateway.backends.memory import Estimate, estimate_file, model_file
from llm_gateway.backends.nvml import GpuMemory, Nvml, open_nvml
from llm_gateway.backends.placement import Booking, Budget, Candidate, Need
from llm_gateway.config import LocalConfig
from llm_gateway.config.placement import PlacementConfig
from llm_gateway.metrics.local_models import STATE_VALUES, LocalModelMetrics

log = logging.getLogger("llm_gateway.backends.residency")

MIB = 1 << 20
CPU = "cpu"


class Hosted(Protocol):
    """What residency needs of a local backend (backends/local_managed.py gives it)."""

    name: str
    cfg: LocalConfig

    async def start_workers(self, gpus: list[int | None]) -> None: ...
    async def stop_workers(self) -> None: ...
    def workers_ready(self) -> int: ...
    def start_failure(self) -> str | None: ...
    def outstanding(self) -> int: ...
    def worker_pids(self) -> list[int]: ...
    async def wait_for_change(self, timeout: float) -> None: ...


@dataclass(eq=False)
class Slot:
    model: Hosted
    together: frozenset[str] = frozenset()  # models sharing a `together` group with it
    exclusive: frozenset[str] = frozenset()  # models sharing an `exclusive` group with it
    groups: tuple[str, ...] = ()
    state: str = "unloaded"
    calls: int = 0  # requests inside its backend call (waiting for the load included)
    waiting: int = 0  # of which waiting for the load
    last_used: float = float("-inf")  # the clock's time
    last_used_at: float | None = None  # epoch seconds
    loaded_at: float | None = None
    load_seconds: float | None = None
    loads: int = 0
    estimate: Estimate | None = None
    estimate_error: str | None = None
    booking: Booking | None = None  # held while loading, loaded or unloading
    gpus: list[int | None] = field(default_factory=list)
    used: Booking | None = None  # what its workers use now
    seen: tuple[int, int] = (0, 0)  # the most one worker used, (GPU, host) MiB, any load
    last_error: str | None = None
    task: asyncio.Task | None = None  # the load or unload under way

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def cfg(self) -> LocalConfig:
        return self.model.cfg

    @property
    def resident(self) -> bool:
        return self.cfg.load == "resident"

    @property
    def permanent(self) -> bool:
        """Never unloaded now: resident, or pinned and loaded."""
        return self.resident or (self.cfg.pinned and self.state == "loaded")

    def idle(self) -> bool:
        return self.calls == 0 and self.model.outstanding() == 0


class MemoryBook:
    REFRESH_SECONDS = 5.0

    def __init__(self, placement: PlacementConfig, *, clock: Callable[[], float],
                 wall: Callable[[], float], nvml_lib: Any) -> None:
        self.placement = placement
        self.slots: dict[str, Slot] = {}
        self._clock, self._wall = clock, wall
        self._nvml_lib = nvml_lib
        self._nvml: Nvml | None = None
        self.gpu_memory: dict[int, GpuMemory] = {}  # NVML's latest reading
        self._foreign: dict[int, int] = {}  # MiB other programs hold on each GPU
        self.metrics: LocalModelMetrics | None = None

    def add(self, model: Hosted) -> Slot:
        groups = {g: grp for g, grp in self.placement.groups.items() if model.name in grp.models}
        peers = {mode: frozenset(m for grp in groups.values() if grp.mode == mode
                                 for m in grp.models if m != model.name)
                 for mode in ("together", "exclusive")}
        slot = Slot(model, peers["together"], peers["exclusive"], tuple(groups))
        self.slots[model.name] = slot
        return slot

    def watch(self, metrics: LocalModelMetrics) -> None:
        self.metrics = metrics

    async def open_memory(self) -> None:
        self._nvml = open_nvml(self.placement.nvml, self._nvml_lib)
        for slot in self.slots.values():
            # Reading a header takes a fraction of a second: not on the event loop.
            slot.estimate, slot.estimate_error = await asyncio.to_thread(_estimate, slot.cfg)
            if slot.estimate_error and slot.cfg.memory_mib is None:
                log.warning("local %s: no memory estimate (%s); booked by what its workers "
                            "use once loaded (set memory_mib to book it before)", slot.name,
                            slot.estimate_error)
            self.show_state(slot)
        self.refresh()

    def close_memory(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    # -- the numbers the planner uses ------------------------------------------------------
    def need(self, slot: Slot) -> Need:
        cfg, est = slot.cfg, slot.estimate
        on_gpu = cfg.n_gpu_layers != 0
        gpu, host = (est.gpu_mib, est.host_mib) if est is not None else (0, 0)
        if cfg.memory_mib is not None:
            gpu, host = (cfg.memory_mib, host) if on_gpu else (0, cfg.memory_mib)
        else:
            gpu, host = max(gpu, slot.seen[0]), max(host, slot.seen[1])
        return Need(cfg.worker_count, gpu if on_gpu else 0, host, tuple(cfg.gpus))

    def budget(self) -> Budget:
        headroom = self.placement.headroom_mib
        caps: dict[int, int | None] = {}
        if self.placement.gpus:
            for gpu in self.placement.gpus:
                nvml = self.gpu_memory.get(gpu.id)
                caps[gpu.id] = gpu.memory_mib if gpu.memory_mib is not None else (
                    nvml.total_mib - headroom if nvml is not None else None)
        else:
            caps = {i: g.total_mib - headroom for i, g in self.gpu_memory.items()}
        gpus = {g: None if cap is None else cap - self._foreign.get(g, 0)
                for g, cap in caps.items()}
        return Budget(gpus, self.placement.cpu_memory_mib)

    def booked(self, exclude: Slot | None = None) -> Booking:
        total = Booking()
        for slot in self.slots.values():
            if slot is not exclude and slot.booking is not None:
                total = total + slot.booking
        return total

    def candidates(self, target: Slot) -> list[Candidate]:
        return [Candidate(
            s.name, s.booking, evictable=s.state == "loaded" and not s.permanent and s.idle(),
            permanent=s.permanent, last_used=s.last_used, together=s.name in target.together,
            exclusive=s.name in target.exclusive,
        ) for s in self.slots.values() if s is not target and s.booking is not None]

    # -- what the workers use --------------------------------------------------------------
    def refresh(self) -> None:
        """Read what each loaded model's workers use, and the GPUs; update the metrics."""
        per_pid: dict[int, dict[int, int]] = {}
        if self._nvml is not None:
            self.gpu_memory = {g.index: g for g in self._nvml.gpus()}
            per_pid = self._nvml.process_mib()
        ours: dict[int, int] = {}
        for slot in self.slots.values():
            pids = slot.model.worker_pids() if slot.state != "unloaded" else []
            if not pids:
                continue
            gpu: dict[int, int] = {}
            for pid in pids:
                for index, mib in per_pid.get(pid, {}).items():
                    gpu[index] = gpu.get(index, 0) + mib
                    ours[index] = ours.get(index, 0) + mib
            slot.used = Booking(gpu, sum(_rss_mib(pid) for pid in pids))
            per_worker = (max(gpu.values(), default=0) if len(pids) == 1 else
                          sum(gpu.values()) // len(pids), slot.used.host // len(pids))
            slot.seen = (max(slot.seen[0], per_worker[0]), max(slot.seen[1], per_worker[1]))
            if slot.booking is not None and slot.cfg.memory_mib is None:
                slot.booking = _larger(slot.booking, slot.used)
        self._foreign = {i: max(0, g.used_mib - ours.get(i, 0))
                         for i, g in self.gpu_memory.items()}
        self._show_memory()

    def forget_memory(self, slot: Slot) -> None:
        slot.used = None
        self._show_memory()

    # -- words and metrics -----------------------------------------------------------------
    def describe_need(self, slot: Slot) -> str:
        need = self.need(slot)
        source = "memory_mib" if slot.cfg.memory_mib is not None else (
            "estimate" if slot.estimate is not None else "unknown until it runs")
        gpu = f"{need.gpu_mib:,} MiB on a GPU + " if need.gpu_mib else ""
        return f"{need.workers} worker(s) x {gpu}{need.host_mib:,} MiB host, {source}"

    def describe_memory(self, slot: Slot) -> str:
        need = self.need(slot)
        estimated = need.workers * (need.gpu_mib + need.host_mib)
        used = slot.used
        using = f"{sum(used.gpu.values()) + used.host:,} MiB" if used is not None else "unknown"
        return f"estimated {estimated:,} MiB, using {using}"

    def count_load(self, slot: Slot, outcome: str, seconds: float | None) -> None:
        if self.metrics is not None:
            self.metrics.loads.labels(slot.name, outcome).inc()
            if seconds is not None:
                self.metrics.load_seconds.labels(slot.name).observe(seconds)

    def count_unload(self, slot: Slot, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.unloads.labels(slot.name, reason).inc()
            if reason in ("memory", "exclusive"):
                self.metrics.evictions.labels(slot.name, reason).inc()

    def show_state(self, slot: Slot) -> None:
        if self.metrics is None:
            return
        self.metrics.state.labels(slot.name).set(STATE_VALUES.get(slot.state, 0))
        self.metrics.loaded.set(sum(s.state == "loaded" for s in self.slots.values()))
        need = self.need(slot)
        estimated = {CPU: need.workers * need.host_mib}
        if need.gpu_mib:
            booked = slot.booking.gpu if slot.booking is not None else {}
            for gpu, mib in booked.items():
                estimated[f"gpu{gpu}"] = mib
        for device, mib in estimated.items():
            self.metrics.memory.labels(slot.name, device, "estimated").set(mib)

    def _show_memory(self) -> None:
        m = self.metrics
        if m is None:
            return
        for slot in self.slots.values():
            used = slot.used or Booking()
            m.memory.labels(slot.name, CPU, "used").set(used.host)
            for gpu, mib in used.gpu.items():
                m.memory.labels(slot.name, f"gpu{gpu}", "used").set(mib)
        budget, booked = self.budget(), self.booked()
        if budget.host is not None:
            m.device_memory.labels(CPU, "budget").set(budget.host)
        m.device_memory.labels(CPU, "booked").set(booked.host)
        for gpu in sorted({*budget.gpus, *self.gpu_memory}):
            device = f"gpu{gpu}"
            if (cap := budget.gpus.get(gpu)) is not None:
                m.device_memory.labels(device, "budget").set(cap)
            m.device_memory.labels(device, "booked").set(booked.gpu.get(gpu, 0))
            if (nvml := self.gpu_memory.get(gpu)) is not None:
                m.device_memory.labels(device, "used").set(nvml.used_mib)


def _estimate(cfg: LocalConfig) -> tuple[Estimate | None, str | None]:
    path = model_file(cfg.model)
    if path is None:
        return None, f"{cfg.model} is not on this machine yet"
    try:
        return estimate_file(path, cfg), None
    except Exception as exc:  # a file it cannot read is no reason not to start
        return None, f"cannot read {path.name}: {exc}"


def _rss_mib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * _PAGE // MIB


def _larger(a: Booking, b: Booking) -> Booking:
    gpus = {g: max(a.gpu.get(g, 0), b.gpu.get(g, 0)) for g in {*a.gpu, *b.gpu}}
    return Booking(gpus, max(a.host, b.host))


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
