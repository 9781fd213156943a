"""A local backend under residency (residency.py): its workers start and stop on request.

Each load makes a fresh `Supervisor` for the pool (a stopped one does not start again), on
the GPUs residency chose (``CUDA_VISIBLE_DEVICES``: the entry's `gpus` replaced for that
load); the pool and its workers stay, so a worker's generation keeps counting up and its
old HTTP client is replaced at the next call. An unload stops the supervisor (SIGTERM, then
SIGKILL), marks the workers down and closes their clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from llm_gateway.backends.discovery import Resolver
from llm_gateway.backends.pool import WorkerPool
from llm_gateway.backends.residency import Residency
from llm_gateway.backends.residency_memory import Slot
from llm_gateway.backends.supervisor import Supervisor
from llm_gateway.config import LocalConfig

# A worker's status after a start that went wrong (spawn.py, worker_health.py).
FAILED_STATUSES = frozenset({"down", "error"})


class ManagedWorkers:
    """LocalBackend's side of residency's `Hosted` protocol (a mixin: it holds the state)."""

    name: str
    cfg: LocalConfig
    pool: WorkerPool
    supervisor: Supervisor
    _clock: Callable[[], float]
    _resolver: Resolver | None
    _worker_args: tuple[str, ...]

    residency: Residency | None
    _on_demand: bool
    _slot: Slot

    async def _close_clients(self) -> None: ...  # LocalBackend's

    def _join(self, residency: Residency | None) -> None:
        """Put the backend under ``residency`` (None: none, its workers start at boot).

        Only on-demand models go through residency per request: a resident one is never
        unloaded, so its calls take the path they took before (its last use noted)."""
        self.residency = residency
        self._on_demand = residency is not None and self.cfg.load == "on_demand"
        if residency is not None:
            self._slot = residency.add(self)
            if self._on_demand:
                name = self.name
                self.pool.on_release = lambda: residency.released(name)

    def _unloaded_on_demand(self) -> bool:
        """An on-demand model not loaded now: ready all the same, its first request loads it."""
        return self._on_demand and self._slot.state != "loaded"

    async def start_workers(self, gpus: list[int | None]) -> None:
        cfg = self.cfg
        chosen = [g for g in gpus if g is not None]
        if len(chosen) == len(gpus) and chosen != list(cfg.gpus):
            cfg = dataclasses.replace(cfg, gpus=chosen)
        for worker in self.pool.workers:
            self.pool.set_health(worker, False, "loading")
        # The last load's supervisor was closed by its unload (or its failed start).
        self.supervisor = Supervisor(cfg, self.pool, clock=self._clock, resolver=self._resolver,
                                     extra_args=self._worker_args)
        await self.supervisor.start()

    async def stop_workers(self) -> None:
        await self.supervisor.aclose()
        for worker in self.pool.workers:
            self.pool.set_health(worker, False, "unloaded")
            worker.pid = None
        await self._close_clients()

    def workers_ready(self) -> int:
        return sum(w.healthy for w in self.pool.workers)

    def start_failure(self) -> str | None:
        """Why the load failed, once every worker has failed to start; else None."""
        workers = self.pool.workers
        if not workers or any(w.status not in FAILED_STATUSES for w in workers):
            return None
        return ("its worker exited or reported an error while loading the model "
                f"{self.cfg.model!r} (the gateway's log has the worker's own message)")

    def outstanding(self) -> int:
        return sum(w.outstanding for w in self.pool.workers)

    def worker_pids(self) -> list[int]:
        return self.supervisor.pids

    async def wait_for_change(self, timeout: float) -> None:
        await self.pool.wait_for_change(timeout)
