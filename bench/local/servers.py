"""The servers under test: llama_cpp.server, a bare worker, and the gateway with its worker."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import httpx
import yaml
from settings import MODEL_NAME, N_CTX, SERVER_DEPS


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:port
    log: Path
    measured_pid: int  # whose CPU is reported (the gateway's own process)


def check_server_deps() -> str | None:
    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed: pip install -e '.[local]'"
    if missing:
        reqs = " ".join(f"'{SERVER_DEPS[m]}'" for m in missing)
        return (f"llama_cpp.server needs {', '.join(missing)} (llama-cpp-python's [server] "
                f"extra). Install just those, without rebuilding llama-cpp-python:\n"
                f"  {sys.executable} -m pip install {reqs}")
    return None


def chat_ok(base: str, timeout: float = 60.0) -> bool:
    """One tiny non-streamed chat completion answers 200."""
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1, "temperature": 0}
    try:
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=timeout)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def start_reference(tmp: Path, gguf: Path, threads: int) -> Server:
    port = common.free_port()
    log = tmp / "llama_cpp_server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
           "--model_alias", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--n_threads", str(threads), "--n_threads_batch", str(threads),
           "--n_ctx", str(N_CTX),
           # Its default cuts a running stream short as soon as another request waits; queue
           # them instead, as our worker does, so every request gets its 128 tokens.
           "--interrupt_requests", "False"]
    proc = common.start(cmd, log)
    base = f"http://127.0.0.1:{port}"
    try:
        common.wait_for(lambda: common.http_status(f"{base}/v1/models") == 200, proc,
                        "llama_cpp.server", 120, log)
    except BaseException:
        common.stop(proc)
        raise
    return Server("llama_cpp.server", proc, base, log, proc.pid)


def worker_args(model: str, threads: int) -> list[str]:
    return ["--model", model, "--n-threads", str(threads), "--n-ctx", str(N_CTX),
            "--max-queue", "16"]


def start_bare_worker(tmp: Path, model: str, threads: int) -> Server:
    port = common.free_port()
    log = tmp / "worker.log"
    cmd = [*common.console_script("llm-gateway", "llm_gateway"), "worker",
           *worker_args(model, threads), "--host", "127.0.0.1", "--port", str(port),
           "--served-name", MODEL_NAME]
    proc = common.start(cmd, log)
    base = f"http://127.0.0.1:{port}"
    try:
        common.wait_for(lambda: common.http_status(f"{base}/health") == 200, proc,
                        "worker", 180, log)
    except BaseException:
        common.stop(proc)
        raise
    return Server("worker", proc, base, log, proc.pid)


def gateway_config(port: int, worker_port: int, model: str, threads: int) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1, "log_level": "warning",
                   "access_log": False, "shutdown_grace_seconds": 5.0},
        "upstreams": {},
        "local": {MODEL_NAME: {
            "model": model, "workers": 1, "n_ctx": N_CTX, "n_threads": threads,
            "max_queue": 16, "host": "127.0.0.1", "base_port": worker_port,
        }},
        "models": [{"name": MODEL_NAME, "backend": MODEL_NAME}],
        "routing": {"default_backend": None, "passthrough_backend": None},
    }


def start_gateway(tmp: Path, model: str, threads: int) -> tuple[Server, str]:
    """The gateway with one spawned worker; returns it and the worker's own base URL."""
    port, worker_port = common.free_port(), common.free_port()
    cfg = tmp / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(port, worker_port, model, threads),
                                  sort_keys=False))
    log = tmp / "gateway.log"
    cmd = [*common.console_script("llm-gateway", "llm_gateway"), "serve", "--config", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY")}
    proc = common.start(cmd, log, env)
    base = f"http://127.0.0.1:{port}"
    worker = f"http://127.0.0.1:{worker_port}"
    try:
        common.wait_for(lambda: common.http_status(f"{base}/v1/models") is not None, proc,
                        "gateway", 60, log)
        # The worker loads the model after the gateway is up; requests wait or fail until then.
        common.wait_for(lambda: chat_ok(base), proc, "gateway's local worker", 180, log,
                        interval=0.5)
    except BaseException:
        common.stop(proc)
        raise
    return Server("gateway", proc, base, log, proc.pid), worker


def served_name(base: str) -> str | None:
    try:
        data = httpx.get(f"{base}/v1/models", timeout=5).json()
        return data["data"][0]["id"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return None
