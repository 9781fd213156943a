#!/usr/bin/env python3
"""Measure llm-gateway's overhead: wrk against a fixed-answer nginx, direct and via the gateway.

nginx and wrk share core 1, the gateway gets core 0 to itself, so "through the gateway" figures
are what one gateway core can do. See README.md next to this file for how to read the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from gateway import Gateway, describe_gateway, start_gateway, status_kib, stop, upstream_connections
from nginx import start_nginx
from otlp import Receiver, start_receiver
from report import compare_cell, compare_variants, evaluate, print_table
from settings import (
    ACCOUNTING_MAX_COST,
    CONNECTIONS,
    CONTENT_CHUNKS,
    DEPLOYMENTS_MAX_COST,
    GATEWAY_CORE,
    LOAD_CORE,
    METRICS_MAX_COST,
    SCENARIOS,
    TRACING_MAX_COST,
)
from wrk import WrkResult, combine, measure, smoke, write_lua

FOREIGN_WARN = common.FOREIGN_WARN


def version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() \
        else "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    p.add_argument("--quick", action="store_true", help="3 s runs")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each run")
    p.add_argument("--transport", choices=("aiohttp", "httpx", "both"), default="aiohttp")
    p.add_argument("--metrics", choices=("on", "off", "both"), default="on",
                   help="gateway metrics (metrics.enabled); both: compare their cost")
    p.add_argument("--accounting", choices=("on", "off", "both"), default="off",
                   help="gateway keys required and the usage ledger on; both: compare their "
                        "cost (not together with --metrics both)")
    p.add_argument("--routing", choices=("single", "deployments", "both"), default="single",
                   help="each model routed to one backend, or to two deployments (balanced, "
                        "weighted); both: compare their cost (alone, not with another both)")
    p.add_argument("--tracing", choices=("on", "off", "both"), default="off",
                   help="every request traced (sample ratio 1.0) and exported to a local OTLP "
                        "receiver (opentelemetry-proto decodes); both: compare its cost against "
                        "off")
    p.add_argument("--rounds", type=int, default=None,
                   help="measured runs per scenario and gateway, alternating between the "
                        "gateways (default 3 with --metrics both, else 1)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 3
    compared = [args.metrics, args.accounting, args.routing, args.tracing]
    if compared.count("both") > 1:
        p.error("compare one thing at a time: --metrics, --accounting, --routing or "
                "--tracing both")
    if args.rounds is None:
        args.rounds = 3 if "both" in compared else 1
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.duration < 1 or args.warmup < 1:
        p.error("--duration and --warmup are whole seconds >= 1 (wrk's -d)")
    return args


@common.exit_codes
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} not found: apt-get install -y nginx wrk", file=sys.stderr)
            return 2
    cores = os.sched_getaffinity(0)
    args.pin = {0, 1} <= cores and shutil.which("taskset") is not None
    transports = ["aiohttp", "httpx"] if args.transport == "both" else [args.transport]
    # The gateways compared side by side: "off" then "on" of the feature under comparison.
    compared = ("accounting" if args.accounting == "both" else
                "deployments" if args.routing == "both" else
                "tracing" if args.tracing == "both" else "metrics")
    metric_modes = (["off", "on"] if "both" in (args.metrics, args.accounting, args.routing,
                                                args.tracing)
                    else ["on"])

    def settings(mode: str) -> tuple[bool, bool, bool, bool]:
        """(metrics, accounting, deployments, tracing) of the gateway run in this mode."""
        def chosen(option: str, on: str = "on") -> bool:
            return mode == "on" if option == "both" else option == on

        return (chosen(args.metrics), chosen(args.accounting),
                chosen(args.routing, "deployments"), chosen(args.tracing))

    def variant(transport: str, mode: str) -> str:
        return transport if len(metric_modes) == 1 else f"{transport}, {compared} {mode}"

    nginx: subprocess.Popen[bytes] | None = None
    receiver: Receiver | None = None  # the spans' OTLP receiver (--tracing on or both)
    gateways: dict[str, Gateway] = {}  # running now, by metrics mode

    def stop_servers() -> None:
        for running in gateways.values():
            stop(running.proc, running.pid)
        common.stop(nginx, grace=10)
        common.stop(receiver.proc if receiver is not None else None, grace=5)

    with common.session("llm-gw-overhead-", args.keep_temp) as (tmp, cleanup):
        cleanup.callback(stop_servers)
        print(f"llm-gateway overhead benchmark: {args.duration} s runs after {args.warmup} s "
              f"warm-up, wrk -t1, transports {', '.join(transports)}, "
              f"metrics {args.metrics}, accounting {args.accounting}, "
              f"tracing {args.tracing}")
        print(f"  python {platform.python_version()}, {version(['nginx', '-v'])}, "
              f"{version(['wrk', '-v'])}, {os.cpu_count()} CPUs, "
              f"{platform.machine()} {platform.release()}")
        if args.pin:
            print(f"  pinning: gateway on core {GATEWAY_CORE}; nginx and wrk on core {LOAD_CORE}")
        else:
            print("  WARNING: fewer than 2 usable cores or no taskset; running unpinned")
        print(f"  temp dir: {tmp}")
        idle_load, busiest = common.top_foreign({os.getpid()})
        if idle_load >= FOREIGN_WARN:
            print(f"  WARNING: other processes use {idle_load:.0%} of a core before the runs; "
                  "figures will be low and noisy:")
            for line in busiest:
                print(f"    {line}")

        json_port, sse_port = common.free_port(), common.free_port()
        nginx = start_nginx(tmp, json_port, sse_port, args.pin)
        if args.tracing != "off":
            receiver = start_receiver(tmp, args.pin)
            print(f"  spans exported to {receiver.url} (its own process, on the load core)")

        lua = {s: write_lua(tmp, s) for s in SCENARIOS}
        direct_url = {"non-stream": f"http://127.0.0.1:{json_port}/v1/chat/completions",
                      "stream": f"http://127.0.0.1:{sse_port}/v1/chat/completions"}
        problems = [f"direct {s}: {p}" for s in SCENARIOS if (p := smoke(direct_url[s], s))]
        if problems:
            raise RuntimeError("nginx answers wrongly:\n" + "\n".join(problems))

        print("\ndirect to nginx")
        direct = {f"{s}/c{c}": measure(direct_url[s], lua[s], c, args, None, [nginx.pid],
                                       f"{s} c={c}")
                  for s in SCENARIOS for c in CONNECTIONS}

        results: dict[str, Any] = {}
        for transport in transports:
            # With metrics both, the two gateways run side by side and their runs alternate
            # (rounds of off, on / on, off), so a slow spell of the machine hits both alike.
            for mode in metric_modes:
                metrics_on, accounting_on, deployments_on, tracing_on = settings(mode)
                print(f"\nthrough the gateway (transport {transport}, metrics "
                      f"{'on' if metrics_on else 'off'}, accounting "
                      f"{'on' if accounting_on else 'off'}, routing "
                      f"{'two deployments' if deployments_on else 'one backend'}, tracing "
                      f"{'on' if tracing_on else 'off'})")
                gateways[mode] = start_gateway(
                    tmp, transport, json_port, sse_port, args.pin, metrics_on, accounting_on,
                    deployments_on, receiver.url if tracing_on and receiver else None)
                describe_gateway(gateways[mode])
            urls = {m: f"http://127.0.0.1:{g.port}/v1/chat/completions"
                    for m, g in gateways.items()}
            scripts = {m: {s: write_lua(tmp, s, g.key, f"-{transport}-{m}") for s in SCENARIOS}
                       for m, g in gateways.items()}
            smoke_problems = {m: {s: p for s in SCENARIOS
                                  if (p := smoke(urls[m], s, gateways[m].key))}
                              for m in metric_modes}
            for m, problems in smoke_problems.items():
                for s, p in problems.items():
                    print(f"  SMOKE FAIL {compared} {m} {s}: {p}")
            cpu_start = {m: common.cpu_seconds(g.pid) for m, g in gateways.items()}
            rounds: dict[str, dict[str, list[WrkResult]]] = {m: {} for m in metric_modes}
            own = [nginx.pid, *(g.pid for g in gateways.values())]
            for s in SCENARIOS:
                for c in CONNECTIONS:
                    for i in range(args.rounds):
                        for m in (metric_modes if i % 2 == 0 else metric_modes[::-1]):
                            where = f" {compared} {m}" if len(metric_modes) > 1 else ""
                            r = measure(urls[m], scripts[m][s], c, args, gateways[m].pid, own,
                                        f"{s} c={c}{where}")
                            rounds[m].setdefault(f"{s}/c{c}", []).append(r)
            for mode in metric_modes:
                gateway = gateways[mode]
                label = variant(transport, mode)
                gw = {key: combine(runs) for key, runs in rounds[mode].items()}
                total_cpu = common.cpu_seconds(gateway.pid) - cpu_start[mode]
                total_req = sum(r.requests for r in gw.values())
                # Warm-up requests are counted out: CPU per request covers measured runs only.
                measured_cpu = sum(r.cpu_s or 0.0 for r in gw.values())
                cpu_ms = measured_cpu * 1000 / total_req if total_req else None
                rss = status_kib(gateway.pid, "VmRSS") / 1024
                hwm = status_kib(gateway.pid, "VmHWM") / 1024
                # Each wrk run ends by dropping its connections mid-request; a gateway that
                # does not release the upstream side then holds more connections than were
                # ever in use.
                held = {"fixed": upstream_connections(gateway.pid, json_port),
                        "sse": upstream_connections(gateway.pid, sse_port)}
                print(f"\n  {label}: upstream connections the gateway holds after the runs: "
                      f"fixed {held['fixed']}, sse {held['sse']} "
                      f"(at most {max(CONNECTIONS)} expected)")
                for name, n in held.items():
                    if n > max(CONNECTIONS):
                        print(f"  WARNING: {n} connections held to upstream '{name}': more "
                              "than were ever in use at once, so connections leak")
                alive = gateway.proc.poll() is None
                if not alive:
                    print(f"  gateway died during the runs:\n{common.tail(gateway.log)}")
                log_tail = common.tail(gateway.log, 15).strip()
                if log_tail:
                    print(f"  gateway log (last lines):\n{log_tail}")
                stop(gateway.proc, gateway.pid)
                del gateways[mode]

                print_table(label, direct, gw, cpu_ms, rss, hwm)
                print(f"targets on one core ({label}):")
                checks = evaluate(direct, gw, rss)
                results[label] = {
                    "runs": {k: asdict(v) for k, v in gw.items()},
                    "cpu_ms_per_request": cpu_ms,
                    "cpu_seconds_total_incl_warmup": total_cpu,
                    "rss_mib": rss, "peak_rss_mib": hwm, "upstream_connections_after": held,
                    "smoke_problems": smoke_problems[mode],
                    "checks": checks,
                }

        if len(transports) > 1:
            print("\ntransport comparison (gateway req/s; p50 ms; CPU ms/req)")
            for key in direct:
                cells = "   ".join(
                    compare_cell(t, results[variant(t, metric_modes[-1])]["runs"][key])
                    for t in transports)
                print(f"  {key:<15} {cells}")

        feature_cost: dict[str, Any] = {}
        if len(metric_modes) > 1:
            limit = {"accounting": ACCOUNTING_MAX_COST, "deployments": DEPLOYMENTS_MAX_COST,
                     "tracing": TRACING_MAX_COST}.get(compared, METRICS_MAX_COST)
            for transport in transports:
                print(f"\n{compared} on against off (transport {transport}; CPU in ms/request)")
                feature_cost[transport] = compare_variants(
                    results[variant(transport, "on")], results[variant(transport, "off")],
                    compared, limit)

        spans = receiver.stats() if receiver is not None else None
        if spans is not None:  # none would mean the "on" runs traced nothing
            print(f"\nOTLP receiver: {spans['spans']} spans in {spans['exports']} exports")
        disturbed = [f"{where} {key} ({r['foreign_cores']:.0%})"
                     for where, runs in [("direct", {k: asdict(v) for k, v in direct.items()}),
                                         *((f"gateway/{t}", r["runs"])
                                           for t, r in results.items())]
                     for key, r in runs.items() if r["foreign_cores"] >= FOREIGN_WARN]
        if disturbed:
            print(f"\nWARNING: {len(disturbed)} runs shared the 2 cores with other processes "
                  f"(share of a core): {', '.join(disturbed)}")
        all_pass = all(c["pass"] for r in results.values() for c in r["checks"]) and all(
            c["pass"] for checks in feature_cost.values() for c in checks)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "duration_s": args.duration, "warmup_s": args.warmup, "pinned": args.pin,
                "content_chunks": CONTENT_CHUNKS, "python": platform.python_version(),
                "direct": {k: asdict(v) for k, v in direct.items()},
                "gateway": results, "compared": compared, "cost": feature_cost,
                "spans_received": spans,
                "all_pass": all_pass,
                "disturbed_runs": disturbed,
                "foreign_load_before_cores": idle_load,
            }, indent=2))
            print(f"\nwrote {args.json}")
        return 1 if args.strict and not all_pass else 0


if __name__ == "__main__":
    sys.exit(main())
