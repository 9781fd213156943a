"""Starting and stopping one worker process: its command line, its port, and its death.

Every child asks the kernel (``PR_SET_PDEATHSIG``) to be killed when the gateway dies without
a shutdown. The kernel ties that to the *thread* that forked, so children are always spawned
from the event loop's thread, never from a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

from llm_gateway.config import LocalConfig

TERM_GRACE_SECONDS = 5.0  # SIGTERM -> SIGKILL


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
    flash = cfg.flash_attn
    cmd += ["--flash-attn", "auto" if flash == "auto" else "on" if flash else "off"]
    if cfg.chat_format:
        cmd += ["--chat-format", cfg.chat_format]
    if cfg.chat_template:
        cmd += ["--chat-template", cfg.chat_template]
    if cfg.tool_format != "auto":
        cmd += ["--tool-format", cfg.tool_format]
    if cfg.lora:
        cmd += ["--lora", cfg.lora]
    if cfg.backend_sampling:
        cmd.append("--backend-sampling")
    if cfg.cache_slots is not None:
        cmd += ["--cache-slots", str(cfg.cache_slots)]
    if not cfg.warmup:
        cmd.append("--no-warmup")
    if not cfg.embeddings:
        cmd.append("--no-embeddings")  # the worker serves them by default
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

