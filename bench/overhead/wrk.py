"""wrk: the load, its output parsed, and one measured run with its CPU accounting."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import common
from nginx import pinned
from settings import API_KEY, CONTENT_CHUNKS, LOAD_CORE, MODEL


@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float | None = None  # gateway CPU during the run
    cpu_ms_per_req: float | None = None
    foreign_cores: float = 0.0  # other processes' CPU during the run, in cores

    @property
    def errors(self) -> str:
        bad = {k: v for k, v in self.socket_errors.items() if v}
        parts = [f"non-2xx {self.non_2xx}"] if self.non_2xx else []
        parts += [f"{k} {v}" for k, v in bad.items()]
        if not self.requests:
            parts.append("no requests completed")
        return ", ".join(parts)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable wrk time {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    r = WrkResult()
    if m := re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out, re.M):
        r.requests = int(m.group(1))
        r.seconds = to_ms(m.group(2) + m.group(3)) / 1000
    if m := re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M):
        r.rps = float(m.group(1))
    if m := re.search(r"^\s*50%\s+(\S+)", out, re.M):
        r.p50_ms = to_ms(m.group(1))
    if m := re.search(r"^\s*99%\s+(\S+)", out, re.M):
        r.p99_ms = to_ms(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out):
        r.non_2xx = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        r.socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                   map(int, m.groups()), strict=True))
    if not r.requests:
        r.p50_ms = r.p99_ms = None  # wrk prints 0.00us then; that is no latency at all
    return r


def request_body(scenario: str) -> str:
    return json.dumps({
        "model": MODEL[scenario],
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": scenario == "stream",
    })


def write_lua(tmp: Path, scenario: str, key: str = API_KEY, tag: str = "") -> Path:
    path = tmp / f"{scenario}{tag}.lua"
    # Long-bracket string: the JSON needs no escaping. The key goes to nginx on direct runs
    # and is replaced by the gateway's own on gateway runs, so both paths pass nginx's check;
    # with gateway keys on, it is the gateway key the benchmark created.
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{request_body(scenario)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return path


def run_wrk(url: str, lua: Path, connections: int, seconds: int, pin: bool) -> tuple[str, int]:
    cmd = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout",
                             "5s", "--latency", "-s", str(lua), url], pin)
    # Hard bound on top of wrk's own -d, in case wrk hangs on a stuck connection.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                          check=False)
    return proc.stdout + proc.stderr, proc.returncode


def measure(url: str, lua: Path, connections: int, args: argparse.Namespace,
            cpu_pid: int | None, own_pids: list[int], label: str) -> WrkResult:
    run_wrk(url, lua, connections, args.warmup, args.pin)  # warm caches, pools, JITs
    before = common.cpu_seconds(cpu_pid) if cpu_pid else None
    # wrk is a direct child (taskset execs it): count its CPU as ours once it is reaped.
    with common.LoadProbe(own_pids, children=True) as probe:
        out, rc = run_wrk(url, lua, connections, args.duration, args.pin)
    result = parse_wrk(out)
    result.foreign_cores = probe.cores
    if before is not None and cpu_pid:
        result.cpu_s = common.cpu_seconds(cpu_pid) - before
        if result.requests:
            result.cpu_ms_per_req = result.cpu_s * 1000 / result.requests
    if rc != 0 or not result.requests:
        print(f"  wrk exited {rc}; output:\n{out}")
    p50 = fmt_ms(result.p50_ms)
    line = f"  {label:<44} {result.rps:>10.1f} req/s  p50 {p50} ms"
    if result.foreign_cores >= common.FOREIGN_WARN:
        line += f"  (other load {result.foreign_cores:.0%} of a core)"
    if result.errors:
        line += f"  ERRORS: {result.errors}"
    print(line, flush=True)
    return result


def combine(runs: list[WrkResult]) -> WrkResult:
    """Several runs of one scenario as one: totals for rate and CPU, medians for latency."""
    if len(runs) == 1:
        return runs[0]

    def median(values: list[float | None]) -> float | None:
        known = sorted(v for v in values if v is not None)
        return known[len(known) // 2] if known else None

    out = WrkResult(
        requests=sum(r.requests for r in runs),
        seconds=sum(r.seconds for r in runs),
        p50_ms=median([r.p50_ms for r in runs]),
        p99_ms=median([r.p99_ms for r in runs]),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors={k: sum(r.socket_errors.get(k, 0) for r in runs)
                       for k in ("connect", "read", "write", "timeout")},
        foreign_cores=max(r.foreign_cores for r in runs),
    )
    out.rps = out.requests / out.seconds if out.seconds else 0.0
    cpu = [r.cpu_s for r in runs if r.cpu_s is not None]
    if cpu:
        out.cpu_s = sum(cpu)
        out.cpu_ms_per_req = out.cpu_s * 1000 / out.requests if out.requests else None
    return out


def smoke(url: str, scenario: str, key: str = API_KEY) -> str | None:
    """One request before the load: None if the answer looks right, else what came back."""
    req = urllib.request.Request(
        url, data=request_body(scenario).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, ctype, body = resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:1000].decode(errors='replace')}"
    except OSError as exc:
        return f"request failed: {exc!r}"
    text = body.decode(errors="replace")
    if scenario == "non-stream":
        try:
            data = json.loads(text)
            ok = data["choices"][0]["message"]["content"] and data["usage"]["total_tokens"]
        except (ValueError, KeyError, IndexError, TypeError):
            ok = False
        return None if ok else f"HTTP {status} {ctype}: unexpected body {text[:500]!r}"
    events = [e for e in text.split("\n\n") if e.strip()]
    content = sum(1 for e in events if re.search(r'"content":\s*"tok', e))
    if "text/event-stream" in ctype and content == CONTENT_CHUNKS and \
            events[-1].strip() == "data: [DONE]":
        return None
    return (f"HTTP {status} {ctype}: {len(events)} events, {content} content chunks, "
            f"last {events[-1][:100]!r}" if events else f"HTTP {status} {ctype}: empty body")


def fmt_ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"
