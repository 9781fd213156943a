"""Keeping a local backend's workers alive: spawn, health-check, restart, and stop them.

Spawned workers are ``python -m llm_gateway worker`` children. Each is watched by one task that
starts it, polls ``GET /health`` until it has loaded its model, then checks it every
``health_interval_seconds`` and restarts it with exponential backoff when it dies, reports
``error``, or stops answering. Workers given as ``urls`` are only health-checked; so are those
found by ``discovery``, whose set follows the DNS answers (see discovery.py).

No child outlives the gateway: shutdown sends SIGTERM, then SIGKILL after a grace period; and
every child asks the kernel (``PR_SET_PDEATHSIG``) to be killed when the gateway dies without
a shutdown. The kernel ties that to the *thread* that forked, so children are always spawned
from the event loop's thread, never from a thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from llm_gateway.backends.discovery import Discovery, Resolver
from llm_gateway.backends.discovery_follow import DiscoveredWorkers
from llm_gateway.backends.pool import WorkerPool
from llm_gateway.backends.spawn import SpawnedWorkers
from llm_gateway.backends.worker_health import (
    HEALTH_TIMEOUT_SECONDS,
    LOADING_POLL_SECONDS,
    MISSES_BEFORE_DOWN,
    HealthChecks,
)
from llm_gateway.backends.worker_process import (
    TERM_GRACE_SECONDS,
    ExitWatch,
    connect_host,
    free_ports,
    worker_command,
)
from llm_gateway.config import LocalConfig

__all__ = [
    "HEALTH_TIMEOUT_SECONDS",
    "LOADING_POLL_SECONDS",
    "MISSES_BEFORE_DOWN",
    "TERM_GRACE_SECONDS",
    "ExitWatch",
    "Supervisor",
    "connect_host",
    "free_ports",
    "worker_command",
]

log = logging.getLogger(__name__)


class Supervisor(SpawnedWorkers, DiscoveredWorkers, HealthChecks):
    # Spawning and restarting: spawn.py; following discovery: discovery_follow.py; health
    # checks: worker_health.py; one process's command line, port and exit: worker_process.py.
    def __init__(
        self,
        cfg: LocalConfig,
        pool: WorkerPool,
        *,
        python: str = sys.executable,
        clock: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        self._python = python
        self._extra_args = extra_args  # appended to each spawned worker's command (tracing)
        self._clock = clock
        self._resolver = resolver  # discovery's DNS lookups; None: the system resolver
        self._tasks: list[asyncio.Task] = []
        self._watchers: dict[int, asyncio.Task] = {}  # discovered workers' health checks
        self._procs: dict[int, subprocess.Popen] = {}
        self._http: httpx.AsyncBaseTransport | None = None
        self._closing = False

    @property
    def pids(self) -> list[int]:
        """Pids of the children alive now."""
        return [p.pid for p in self._procs.values() if p.poll() is None]

    async def start(self) -> None:
        # The bare transport: httpx.AsyncClient would log every check at INFO.
        self._http = httpx.AsyncHTTPTransport(retries=0)
        cfg = self.cfg
        if cfg.discovery is not None:
            found = Discovery(cfg.discovery, cfg.discovery_interval_seconds,
                              resolver=self._resolver, name=cfg.name)
            self._launch(found.run(self._follow))
            return
        if not cfg.spawns:
            for worker, url in zip(self.pool.workers, cfg.urls, strict=True):
                worker.url = url.rstrip("/").removesuffix("/v1")
                self._launch(self._watch_external(worker))
            return
        if cfg.base_port is not None:
            ports = [cfg.base_port + i for i in range(cfg.worker_count)]
        else:
            ports = free_ports(cfg.host, cfg.worker_count)
        gpus: list[int | None] = list(cfg.gpus) or [None] * cfg.worker_count
        for worker, port, gpu in zip(self.pool.workers, ports, gpus, strict=True):
            self._launch(self._keep_alive(worker, port, gpu))

    def _launch(self, coro) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    async def aclose(self) -> None:
        self._closing = True
        self._tasks += self._watchers.values()
        self._watchers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(self._stop(i, p) for i, p in list(self._procs.items())))
        if self._http is not None:
            await self._http.aclose()
