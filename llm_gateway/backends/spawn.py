"""Spawned workers: start one, wait until it is ready, check it, and restart it with
exponential backoff when it dies, reports ``error``, or stops answering.

Spawned workers are ``python -m llm_gateway worker`` children. No child outlives the gateway:
shutdown sends SIGTERM, then SIGKILL after a grace period; and every child asks the kernel
(``PR_SET_PDEATHSIG``) to be killed when the gateway dies without a shutdown. The kernel ties
that to the *thread* that forked, so children are always spawned from the event loop's thread,
never from a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable

from llm_gateway.backends.pool import Worker, WorkerPool
from llm_gateway.backends.worker_health import (
    LOADING_POLL_SECONDS,
    MISSES_BEFORE_DOWN,
    HealthChecks,
    _first,
)
from llm_gateway.backends.worker_process import (
    TERM_GRACE_SECONDS,
    ExitWatch,
    _death_signal_hook,
    connect_host,
    free_ports,
    worker_command,
)
from llm_gateway.config import LocalConfig

# The supervisor's logger, as before the split: log filters and configs name it.
log = logging.getLogger("llm_gateway.backends.supervisor")


class SpawnedWorkers(HealthChecks):
    """The Supervisor's spawned workers (a mixin: the Supervisor holds the state)."""

    cfg: LocalConfig
    pool: WorkerPool
    _python: str
    _extra_args: tuple[str, ...]
    _clock: Callable[[], float]
    _procs: dict[int, subprocess.Popen]
    _closing: bool

    async def _keep_alive(self, worker: Worker, port: int, gpu: int | None) -> None:
        failures = 0
        while not self._closing:
            ready_at = None
            try:
                proc = self._spawn(worker, port, gpu)
            except OSError as exc:
                log.error("local %s: cannot start worker %d: %s", self.cfg.name, worker.index, exc)
            else:
                watch = ExitWatch(proc)
                try:
                    if await self._wait_ready(worker, proc, watch):
                        ready_at = self._clock()
                        await self._monitor(worker, watch)
                finally:
                    watch.close()
                self.pool.set_health(worker, False, "down")
                await self._stop(worker.index, proc)
            # A worker that ran well for a while starts the backoff over; a crash loop doubles it.
            if ready_at is not None and (
                self._clock() - ready_at >= self.cfg.max_restart_backoff_seconds
            ):
                failures = 0
            failures += 1
            if ready_at is None and self.cfg.base_port is None:
                port = free_ports(self.cfg.host, 1)[0]  # in case the port was the problem
            delay = min(self.cfg.max_restart_backoff_seconds,
                        self.cfg.restart_backoff_seconds * 2 ** (failures - 1))
            log.warning("local %s: restarting worker %d in %.1f s", self.cfg.name,
                        worker.index, delay)
            await asyncio.sleep(delay)
            worker.restarts += 1

    def _spawn(self, worker: Worker, port: int, gpu: int | None) -> subprocess.Popen:
        env = dict(os.environ)
        # The worker serves its own /metrics; the gateway's shared metrics folder is not for it.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        proc = subprocess.Popen(
            [*worker_command(self.cfg, port, self._python), *self._extra_args],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_death_signal_hook(),  # see the module docstring
            # Its own process group: a Ctrl-C meant for the gateway must not kill the workers
            # while the gateway is still draining requests on them.
            process_group=0,
        )
        self._procs[worker.index] = proc
        worker.pid = proc.pid
        worker.url = f"http://{connect_host(self.cfg.host)}:{port}"
        worker.generation += 1
        self.pool.set_health(worker, False, "starting")
        log.info("local %s: worker %d started (pid %d, %s)", self.cfg.name, worker.index,
                 proc.pid, worker.url)
        return proc

    async def _wait_ready(self, worker: Worker, proc: subprocess.Popen, watch: ExitWatch) -> bool:
        started = self._clock()
        deadline = started + self.cfg.startup_timeout_seconds
        while self._clock() < deadline:
            if watch.exited.is_set():
                log.error("local %s: worker %d exited with code %s while starting",
                          self.cfg.name, worker.index, proc.returncode)
                return False
            status = await self._health(worker)
            if status == "ok":
                self.pool.set_health(worker, True, "ok")
                log.info("local %s: worker %d ready in %.1f s", self.cfg.name, worker.index,
                         self._clock() - started)
                return True
            if status == "error":
                log.error("local %s: worker %d reports an error while loading", self.cfg.name,
                          worker.index)
                return False
            await watch.wait(LOADING_POLL_SECONDS)
        log.error("local %s: worker %d not ready after %.0f s", self.cfg.name, worker.index,
                  self.cfg.startup_timeout_seconds)
        return False

    async def _monitor(self, worker: Worker, watch: ExitWatch) -> None:
        """Check a ready worker until it must be restarted: it exited, errs, or is hung."""
        last_ok = self._clock()
        misses = 0
        while True:
            await _first(watch.exited, worker.check_now, timeout=self.cfg.health_interval_seconds)
            worker.check_now.clear()
            if watch.exited.is_set():
                log.warning("local %s: worker %d (pid %s) exited with code %s", self.cfg.name,
                            worker.index, worker.pid, watch.proc.returncode)
                return
            status = await self._health(worker)
            if status == "ok":
                last_ok, misses = self._clock(), 0
                self.pool.set_health(worker, True, "ok")
                continue
            if status == "error":
                log.error("local %s: worker %d reports an error", self.cfg.name, worker.index)
                return
            misses += 1
            if status is not None or misses >= MISSES_BEFORE_DOWN:
                self.pool.set_health(worker, False, status or "down")
            if self._clock() - last_ok > self.cfg.startup_timeout_seconds:
                log.error("local %s: worker %d has not answered its health check for %.0f s",
                          self.cfg.name, worker.index, self._clock() - last_ok)
                return

    async def _stop(self, index: int, proc: subprocess.Popen) -> None:
        """SIGTERM, then SIGKILL after a grace period; always reaps the child."""
        try:
            if proc.poll() is None:
                proc.terminate()
                watch = ExitWatch(proc)
                try:
                    if not await watch.wait(TERM_GRACE_SECONDS):
                        log.warning("local %s: worker %d ignored SIGTERM; killing it",
                                    self.cfg.name, index)
                        proc.kill()
                        await watch.wait(TERM_GRACE_SECONDS)
                finally:
                    watch.close()
        finally:
            if proc.poll() is None:  # cancelled mid-way, or a kill that did not land yet
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1.0)
            if self._procs.get(index) is proc:
                del self._procs[index]
