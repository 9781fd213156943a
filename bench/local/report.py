"""The local benchmark's table and its PASS/FAIL targets."""

from __future__ import annotations

from typing import Any

from load import Run
from settings import MAX_TOKENS, N_CTX, TARGET_RATIO, TARGET_TTFT_SHARE_MS


def fmt(value: float | None, digits: int = 1, width: int = 0) -> str:
    text = "n/a" if value is None else f"{value:.{digits}f}"
    return text.rjust(width) if width else text



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
