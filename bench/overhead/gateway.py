"""The gateway under test: its config, start-up, and what /proc says about it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import yaml
from nginx import pinned
from settings import API_KEY, API_KEY_ENV, GATEWAY_CORE


def listening_inode(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    return cols[9]
    return None


def server_pid(launcher: int, port: int) -> int:
    """The pid that owns the listening socket: the python running uvicorn, not a wrapper."""
    inode = listening_inode(port)
    if inode is not None:
        target = f"socket:[{inode}]"
        # Deepest first: with a wrapper that forks, the child holding the socket is the server.
        for pid in reversed(common.descendants(launcher)):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
    return launcher


def upstream_connections(pid: int, port: int) -> int:
    """Established TCP connections from ``pid`` to 127.0.0.1:``port``."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if (cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port
                        and cols[9] in inodes):
                    count += 1
    return count


def proc_status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def status_kib(pid: int, key: str) -> int:
    return int(proc_status(pid, key).split()[0])



@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    pid: int
    port: int
    log: Path
    key: str = API_KEY  # what clients send: the gateway key when keys are on


def gateway_config(transport: str, port: int, json_port: int, sse_port: int,
                   metrics: bool = True, accounting: bool = False,
                   data_dir: Path | None = None, deployments: bool = False,
                   tracing: str | None = None) -> dict[str, Any]:
    def upstream(base_url: str) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "api_key_env": API_KEY_ENV,
            "transport": transport,
            "max_connections": 256,
            "list_models": False,
            "timeouts": {"connect": 5.0, "read": 30.0, "total": 60.0},
            # No retries: a failing request must show up as an error, not as extra latency.
            "retries": {"attempts": 0, "backoff_seconds": 0.0},
        }

    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1, "log_level": "warning",
                   "access_log": False, "shutdown_grace_seconds": 2.0},
        "upstreams": {
            "fixed": upstream(f"http://127.0.0.1:{json_port}/v1"),
            "sse": upstream(f"http://127.0.0.1:{sse_port}/v1"),
            # deployments: a second name for each (another key, another region) to balance
            **({"fixed-2": upstream(f"http://127.0.0.1:{json_port}/v1"),
                "sse-2": upstream(f"http://127.0.0.1:{sse_port}/v1")} if deployments else {}),
        },
        "models": ([{"name": "bench-json", "deployments": [{"backend": "fixed"},
                                                          {"backend": "fixed-2"}]},
                    {"name": "bench-sse", "deployments": [{"backend": "sse"},
                                                         {"backend": "sse-2"}]}]
                   if deployments else
                   [{"name": "bench-json", "backend": "fixed"},
                    {"name": "bench-sse", "backend": "sse"}]),
        "routing": {"default_backend": None, "passthrough_backend": "fixed"},
        "metrics": {"enabled": metrics},
        # accounting on: a gateway key is required and every request goes to the usage
        # ledger (SQLite, spooled to disk first), as a production gateway runs; off: neither.
        "auth": {"mode": "keys" if accounting else "none"},
        "accounting": {"enabled": accounting},
        "storage": {"data_dir": str(data_dir)} if data_dir is not None else {},
        # tracing: every request traced (sample ratio 1.0), exported to this OTLP receiver
        "tracing": {"enabled": True, "endpoint": tracing, "sample_ratio": 1.0}
        if tracing is not None else {},
    }


def create_key(gateway: list[str], cfg: Path, env: dict[str, str]) -> str:
    """A gateway key in the config's database, made with the CLI as an operator would."""
    proc = subprocess.run([*gateway, "keys", "create", "--config", str(cfg), "--name", "bench",
                           "--format", "json"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"llm-gateway keys create failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout)["key"]


def start_gateway(tmp: Path, transport: str, json_port: int, sse_port: int,
                  pin: bool, metrics: bool = True, accounting: bool = False,
                  deployments: bool = False, tracing: str | None = None) -> Gateway:
    port = common.free_port()
    stem = (f"gateway-{transport}-metrics-{'on' if metrics else 'off'}"
            f"-accounting-{'on' if accounting else 'off'}"
            f"-routing-{'deployments' if deployments else 'single'}"
            f"-tracing-{'on' if tracing else 'off'}")
    cfg = tmp / f"{stem}.yaml"
    data_dir = tmp / f"{stem}-data"
    cfg.write_text(yaml.safe_dump(gateway_config(transport, port, json_port, sse_port, metrics,
                                                 accounting, data_dir, deployments, tracing),
                                  sort_keys=False))
    log = tmp / f"{stem}.log"
    env = {**os.environ, API_KEY_ENV: API_KEY}
    gateway = common.console_script("llm-gateway", "llm_gateway")
    key = create_key(gateway, cfg, env) if accounting else API_KEY
    cmd = pinned(GATEWAY_CORE, [*gateway, "serve", "--config", str(cfg),
                                "--host", "127.0.0.1", "--port", str(port)], pin)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    gw = Gateway(proc, proc.pid, port, log, key)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{common.tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except urllib.error.HTTPError as exc:  # it answered, just not with 200
                print(f"  note: GET /v1/models answered {exc.code}: {exc.read()[:300]!r}")
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not answering after 60 s:\n{common.tail(log)}")
            time.sleep(0.1)
        gw.pid = server_pid(proc.pid, port)
    except BaseException:
        stop(proc)
        raise
    return gw


# --------------------------------------------------------------------------- wrk


def describe_gateway(gateway: Gateway) -> None:
    cmdline = Path(f"/proc/{gateway.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    print(f"  gateway pid {gateway.pid} (launcher {gateway.proc.pid}), cores "
          f"{proc_status(gateway.pid, 'Cpus_allowed_list')}: "
          f"{cmdline.decode(errors='replace').strip()}")


def stop(proc: subprocess.Popen[bytes] | None, server: int | None = None) -> None:
    """Stop the gateway: the server pid first (it may sit below a wrapper), then the launcher."""
    common.stop(proc, grace=10, first=server)
