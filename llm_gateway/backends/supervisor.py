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
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import orjson

from llm_gateway.backends.discovery import Discovery, Resolver
from llm_gateway.backends.pool import Worker, WorkerPool
from llm_gateway.config import LocalConfig

log = logging.getLogger(__name__)

TERM_GRACE_SECONDS = 5.0  # SIGTERM -> SIGKILL
HEALTH_TIMEOUT_SECONDS = 2.0
_HEALTH_TIMEOUT = httpx.Timeout(HEALTH_TIMEOUT_SECONDS).as_dict()
LOADING_POLL_SECONDS = 0.1  # while a worker loads: it is ready as soon as it says so
MISSES_BEFORE_DOWN = 2  # unanswered health checks before a live worker stops getting requests


def worker_command(cfg: LocalConfig, port: int, python: str = sys.executable) -> list[str]:
    """The command line of one spawned worker."""
    cmd = [
        python, "-m", "llm_gateway", "worker",
        "--model", cfg.model,
        "--host", cfg.host,
        "--port", str(port),
        "--served-name", cfg.name,
        "--n-gpu-layers", str(cfg.n_gpu_layers),
        "--n-ctx", str(cfg.n_ctx),
        "--n-batch", str(cfg.n_batch),
        "--max-queue", str(cfg.max_queue),
        "--engine", cfg.engine,
        "--parallel", str(cfg.parallel),
    ]
    if cfg.n_threads is not None:
        cmd += ["--n-threads", str(cfg.n_threads)]
    if cfg.flash_attn:
        cmd.append("--flash-attn")
    if cfg.chat_format:
        cmd += ["--chat-format", cfg.chat_format]
    if cfg.chat_template:
        cmd += ["--chat-template", cfg.chat_template]
    if cfg.lora:
        cmd += ["--lora", cfg.lora]
    if cfg.embedding:
        cmd.append("--embedding")
    return cmd


def connect_host(host: str) -> str:
    """Where to reach a server bound to ``host``: a wildcard bind is reached on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (the sockets are held together)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _death_signal_hook() -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGKILL when its parent dies (Linux); else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would kill us
            os._exit(1)

    return hook


class ExitWatch:
    """Learns at once that a child exited: a pidfd on the event loop, else a short poll."""

    POLL_SECONDS = 0.2

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        self._poller: asyncio.Task | None = None
        try:
            self._fd = os.pidfd_open(proc.pid)
            self._loop.add_reader(self._fd, self._check)
        except (AttributeError, OSError, NotImplementedError):
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._poller = self._loop.create_task(self._poll())
        self._check()

    def _check(self) -> None:
        if self.proc.poll() is not None:  # also reaps it: no zombie
            self.exited.set()
            self.close()

    async def _poll(self) -> None:
        while not self.exited.is_set():
            await asyncio.sleep(self.POLL_SECONDS)
            self._check()

    async def wait(self, timeout: float | None) -> bool:
        """Whether the child exited within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.exited.wait()
        return self.exited.is_set()

    def close(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._poller is not None and self._poller is not asyncio.current_task():
            self._poller.cancel()
            self._poller = None


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class Supervisor:
    def __init__(
        self,
        cfg: LocalConfig,
        pool: WorkerPool,
        *,
        python: str = sys.executable,
        clock: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None,
    ) -> None:
        self.cfg = cfg
        self.pool = pool
        self._python = python
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

    # -- spawned workers -------------------------------------------------------------------
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
            worker_command(self.cfg, port, self._python),
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

    # -- external workers ------------------------------------------------------------------
    def _follow(self, urls: set[str]) -> None:
        """Make the discovered ``urls`` the pool's workers: watch new ones, drop vanished ones."""
        if self._closing:
            return
        known = {w.url: w for w in self.pool.workers}
        for url in sorted(urls - known.keys()):
            worker = self.pool.add(url)
            task = asyncio.get_running_loop().create_task(self._watch_external(worker))
            self._watchers[worker.index] = task
            log.info("local %s: worker %d discovered at %s", self.cfg.name, worker.index, url)
        for url in known.keys() - urls:
            worker = known[url]
            if (task := self._watchers.pop(worker.index, None)) is not None:
                task.cancel()
            self.pool.remove(worker)
            log.info("local %s: worker %d at %s left (%d requests in flight finish there)",
                     self.cfg.name, worker.index, url, worker.outstanding)

    async def _watch_external(self, worker: Worker) -> None:
        misses = 0
        while True:
            status = await self._health(worker)
            if status == "ok":
                misses = 0
                self.pool.set_health(worker, True, "ok")
            else:
                misses += 1
                if status is not None or misses >= MISSES_BEFORE_DOWN or not worker.healthy:
                    self.pool.set_health(worker, False, status or "down")
            # Poll fast until it is up, so a starting worker is used as soon as it can be.
            interval = self.cfg.health_interval_seconds
            if not worker.healthy:
                interval = min(interval, 0.5)
            await _first(worker.check_now, timeout=interval)
            worker.check_now.clear()

    async def _health(self, worker: Worker) -> str | None:
        """The worker's reported status ("ok", "loading", "error", ...); None if unreachable."""
        assert self._http is not None
        request = httpx.Request("GET", worker.url + "/health",
                                extensions={"timeout": _HEALTH_TIMEOUT})
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                response = await self._http.handle_async_request(request)
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
            status = orjson.loads(body).get("status")
        except (httpx.HTTPError, TimeoutError, orjson.JSONDecodeError, AttributeError):
            return None
        return status if isinstance(status, str) else None
