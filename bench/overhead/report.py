"""The overhead benchmark's tables and its PASS/FAIL targets."""

from __future__ import annotations

from typing import Any

from settings import (
    CONNECTIONS,
    CONTENT_CHUNKS,
    SCENARIOS,
    TARGET_ADDED_P50_MS,
    TARGET_RPS,
    TARGET_RSS_MIB,
)
from wrk import WrkResult, fmt_ms


def compare_cell(transport: str, run: dict[str, Any]) -> str:
    cpu = run["cpu_ms_per_req"]
    return (f"{transport}: {run['rps']:>7.0f} r/s {fmt_ms(run['p50_ms'])} ms "
            f"{'  n/a' if cpu is None else f'{cpu:.3f}'}")


def compare_variants(on: dict[str, Any], off: dict[str, Any], what: str,
                     max_cost: float) -> list[dict[str, Any]]:
    """A feature on against off, run by run; the 32-connection throughput is the target."""
    print(f"{'run':<15}{'off r/s':>9}{'on r/s':>9}{'on/off':>8}{'off CPU':>9}{'on CPU':>8}"
          f"{'on/off':>8}")
    checks = []
    for key, run_off in off["runs"].items():
        run_on = on["runs"][key]
        ratio = run_on["rps"] / run_off["rps"] if run_off["rps"] else None
        cpu_on, cpu_off = run_on["cpu_ms_per_req"], run_off["cpu_ms_per_req"]
        cpu_ratio = cpu_on / cpu_off if cpu_on and cpu_off else None
        print(f"{key:<15}{run_off['rps']:>9.0f}{run_on['rps']:>9.0f}"
              f"{'n/a' if ratio is None else f'{ratio:.3f}':>8}"
              f"{'n/a' if cpu_off is None else f'{cpu_off:.3f}':>9}"
              f"{'n/a' if cpu_on is None else f'{cpu_on:.3f}':>8}"
              f"{'n/a' if cpu_ratio is None else f'{cpu_ratio:.3f}':>8}")
        if key.endswith(f"/c{max(CONNECTIONS)}"):
            checks.append({"check": f"{key}: {what} on >= {1 - max_cost:.0%} of "
                                    f"the req/s with {what} off",
                           "value": None if ratio is None else round(ratio, 3),
                           "pass": ratio is not None and ratio >= 1 - max_cost})
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['check']}: {c['value']}")
    return checks



def print_table(transport: str, direct: dict[str, WrkResult], gw: dict[str, WrkResult],
                cpu_ms: float | None, rss_mib: float, hwm_mib: float) -> None:
    print(f"\n=== gateway transport: {transport} ===")
    head = (f"{'scenario':<11}{'conns':>6}{'direct r/s':>12}{'gw r/s':>10}{'ratio':>7}"
            f"{'direct p50/p99 ms':>20}{'gw p50/p99 ms':>18}{'added p50':>11}{'gw CPU':>9}")
    print(head)
    print(f"{'':<11}{'':>6}{'':>12}{'':>10}{'':>7}{'':>20}{'':>18}{'ms':>11}{'ms/req':>9}")
    print("-" * len(head))
    for scenario in SCENARIOS:
        for conns in CONNECTIONS:
            key = f"{scenario}/c{conns}"
            d, g = direct[key], gw[key]
            ratio = f"{g.rps / d.rps:.2f}" if d.rps else "n/a"
            added = (f"{g.p50_ms - d.p50_ms:+.3f}"
                     if g.p50_ms is not None and d.p50_ms is not None else "n/a")
            cpu = f"{g.cpu_ms_per_req:.3f}" if g.cpu_ms_per_req is not None else "n/a"
            print(f"{scenario:<11}{conns:>6}{d.rps:>12.0f}{g.rps:>10.0f}{ratio:>7}"
                  f"{fmt_ms(d.p50_ms):>11}/{fmt_ms(d.p99_ms).strip():<8}"
                  f"{fmt_ms(g.p50_ms):>9}/{fmt_ms(g.p99_ms).strip():<8}{added:>11}{cpu:>9}")
    total = f"{cpu_ms:.3f} ms" if cpu_ms is not None else "n/a"
    print(f"gateway CPU per request (all gateway runs): {total}")
    print(f"gateway RSS after the runs: {rss_mib:.1f} MiB (peak VmHWM {hwm_mib:.1f} MiB)")


def evaluate(direct: dict[str, WrkResult], gw: dict[str, WrkResult],
             rss_mib: float) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        g = gw[f"{scenario}/c32"]
        what = (f"{scenario} ({CONTENT_CHUNKS} content chunks)" if scenario == "stream"
                else scenario)
        checks.append({"check": f"{what} at 32 connections >= {TARGET_RPS[scenario]:.0f} req/s",
                       "value": round(g.rps, 1), "pass": g.rps >= TARGET_RPS[scenario]
                       and not g.errors})
    for scenario in SCENARIOS:
        d, g = direct[f"{scenario}/c1"], gw[f"{scenario}/c1"]
        added = (g.p50_ms - d.p50_ms if g.p50_ms is not None and d.p50_ms is not None
                 else None)
        checks.append({"check": f"{scenario} added p50 at 1 connection <= "
                                f"{TARGET_ADDED_P50_MS:g} ms",
                       "value": None if added is None else round(added, 3),
                       "pass": added is not None and added <= TARGET_ADDED_P50_MS})
    checks.append({"check": f"RSS after the run <= {TARGET_RSS_MIB:.0f} MiB",
                   "value": round(rss_mib, 1), "pass": rss_mib <= TARGET_RSS_MIB})
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['check']}: {c['value']}")
    return checks


# --------------------------------------------------------------------------- main
