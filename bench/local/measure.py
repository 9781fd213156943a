"""Measuring one server: load runs at each concurrency, TTFT series, warm-up."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from typing import Any

import common
import httpx
from load import (
    Counter,
    Run,
    Sample,
    load_run,
    median,
    percentile,
    request_body,
    stream_once,
    summarize,
    ttft_series,
)
from report import fmt
from servers import Server
from settings import CONCURRENCY, MAX_TOKENS


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
