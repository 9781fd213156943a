"""No worker outlives its gateway: on a clean shutdown, nor when the gateway is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from llm_gateway.backends.supervisor import free_ports

from local_support import alive, wait_until


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def test_shutdown_stops_every_worker(make_local_gateway) -> None:
    gateway = make_local_gateway({"smol": {"workers": 2}})
    pids = gateway.wait_ready("smol")
    assert len(pids) == 2 and all(alive(p) for p in pids)
    assert sorted(pids) == sorted(gateway.backend("smol").supervisor.pids)
    started = time.monotonic()
    gateway.stop()
    assert time.monotonic() - started < 8  # SIGTERM was enough; no SIGKILL grace spent
    assert not [p for p in pids if alive(p)]


def test_one_worker_per_gpu_each_seeing_only_its_own(make_local_gateway) -> None:
    # No GPU needed: with no layers offloaded, llama.cpp runs on the CPU whatever it is shown.
    gateway = make_local_gateway({"smol": {"gpus": [1, 0], "n_gpu_layers": 0}})
    pids = gateway.wait_ready("smol")
    assert len(pids) == 2
    for pid, gpu in zip(pids, ["1", "0"], strict=True):
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        assert env[b"CUDA_VISIBLE_DEVICES"] == gpu.encode()


def test_workers_die_with_a_killed_gateway(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(textwrap.dedent("""
        server: {log_level: warning}
        local:
          smol: {model: default, n_ctx: 512, n_threads: 1}
        models:
          - {name: smol, backend: smol}
    """))
    port = free_ports("127.0.0.1", 1)[0]
    gateway = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        wait_until(lambda: bool(children(gateway.pid)), 20, "no worker was spawned")
        workers = children(gateway.pid)
        # Serving: the lifespan has run, so the worker is the gateway's for good.
        wait_until(lambda: _answers(port), 20, "gateway not serving")
        gateway.kill()  # SIGKILL: no shutdown code runs in the gateway
        gateway.wait(5)
        wait_until(lambda: not any(alive(p) for p in workers), 5,
                   f"workers {workers} outlived their gateway")
    finally:
        gateway.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, 9)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
