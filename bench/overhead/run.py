#!/usr/bin/env python3
"""Measure llm-gateway's overhead: wrk against a fixed-answer nginx, direct and via the gateway.

nginx and wrk share core 1, the gateway gets core 0 to itself, so "through the gateway" figures
are what one gateway core can do. See README.md next to this file for how to read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
API_KEY_ENV = "BENCH_UPSTREAM_KEY"
API_KEY = "sk-bench"
CONTENT_CHUNKS = 20
CONNECTIONS = (1, 32)
SCENARIOS = ("non-stream", "stream")
MODEL = {"non-stream": "bench-json", "stream": "bench-sse"}
GATEWAY_CORE = "0"
LOAD_CORE = "1"  # nginx and wrk

# Targets on one gateway core.
TARGET_RPS = {"non-stream": 1000.0, "stream": 800.0}  # at 32 connections
TARGET_ADDED_P50_MS = 1.0  # at 1 connection
TARGET_RSS_MIB = 150.0
METRICS_MAX_COST = 0.05  # metrics on may cost at most 5% of the throughput with them off

CREATED = 1_700_000_000
FOREIGN_WARN = 0.05  # cores of other load that make a run's figures suspect


# --------------------------------------------------------------------------- fake upstream


def chat_completion_body() -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "bench-json",
        "system_fingerprint": "fp_bench",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help you today?",
                        "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }


def sse_events() -> list[str]:
    """The stream as OpenAI sends it with include_usage: role, content, finish, usage, DONE."""

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> str:
        body = {
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
            "model": "bench-sse", "system_fingerprint": "fp_bench", "choices": choices,
            "usage": usage,
        }
        return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [chunk([choice({"role": "assistant", "content": ""})], None)]
    events += [chunk([choice({"content": f"tok{i} "})], None) for i in range(CONTENT_CHUNKS)]
    events.append(chunk([choice({}, "stop")], None))
    events.append(chunk([], {"prompt_tokens": 9, "completion_tokens": CONTENT_CHUNKS,
                             "total_tokens": 9 + CONTENT_CHUNKS}))
    events.append("data: [DONE]\n\n")
    return events


def nginx_quote(text: str) -> str:
    """Escape for an nginx quoted string; newlines become \\n (nginx's parser decodes it)."""
    if "$" in text:
        raise ValueError("'$' would be read as an nginx variable")
    return (text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
            .replace("\n", "\\n"))


def render_nginx_conf(tmp: Path, json_port: int, sse_port: int) -> str:
    # Group SSE events into variables of < 4 KiB each (nginx's per-token limit).
    parts: list[str] = []
    for event in sse_events():
        quoted = nginx_quote(event)
        if parts and len(parts[-1]) + len(quoted) < 3500:
            parts[-1] += quoted
        else:
            parts.append(quoted)
    sets = "\n".join(f"            set $sse_{i} '{p}';" for i, p in enumerate(parts))
    variables = "".join(f"${{sse_{i}}}" for i in range(len(parts)))
    json_body = nginx_quote(json.dumps(chat_completion_body(), separators=(",", ":")))
    text = (HERE / "nginx.conf.template").read_text()
    for key, value in {
        "@TMP@": str(tmp), "@JSON_PORT@": str(json_port), "@SSE_PORT@": str(sse_port),
        "@API_KEY@": API_KEY, "@JSON_BODY@": json_body, "@SSE_SETS@": sets,
        "@SSE_VARS@": variables,
    }.items():
        text = text.replace(key, value)
    return text


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: str, cmd: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", core, *cmd] if pin else cmd


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None, extra_pid: int | None = None) -> None:
    """SIGTERM, then SIGKILL after a grace period; only processes this script started."""
    if proc is None:
        return
    # The server may be a descendant of the launcher (a wrapper that forks): stop it first,
    # so it shuts down cleanly instead of being orphaned when the wrapper goes.
    if extra_pid and extra_pid != proc.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(extra_pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(extra_pid, 0)  # raises ProcessLookupError once it is gone
                time.sleep(0.05)
            os.kill(extra_pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def listening_inode(port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    return cols[9]
    return None


def server_pid(launcher: int, port: int) -> int:
    """The pid that owns the listening socket: the python running uvicorn, not a wrapper."""
    inode = listening_inode(port)
    if inode is not None:
        target = f"socket:[{inode}]"
        # Deepest first: with a wrapper that forks, the child holding the socket is the server.
        for pid in reversed(descendants(launcher)):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
    return launcher


def upstream_connections(pid: int, port: int) -> int:
    """Established TCP connections from ``pid`` to 127.0.0.1:``port``."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if (cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port
                        and cols[9] in inodes):
                    count += 1
    return count


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # comm may contain spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def status_kib(pid: int, key: str) -> int:
    return int(proc_status(pid, key).split()[0])


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in descendants(root):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (steal included: the host took them from us)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def self_and_children_cpu_seconds() -> float:
    # wrk is a direct child (taskset execs it), so its CPU lands here once it is reaped.
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class LoadProbe:
    """CPU that other processes burn during a run: the machine's busy time minus ours.

    Two cores are all there is; anything else running skews every figure, so say so.
    """

    def __init__(self, own_pids: list[int]) -> None:
        self.own_pids = own_pids

    def _own(self) -> float:
        return self_and_children_cpu_seconds() + sum(tree_cpu_seconds(p) for p in self.own_pids)

    def __enter__(self) -> LoadProbe:
        self.t0, self.busy0, self.own0 = time.monotonic(), machine_busy_seconds(), self._own()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.t0
        foreign = (machine_busy_seconds() - self.busy0) - (self._own() - self.own0)
        self.cores = max(0.0, foreign / wall) if wall > 0 else 0.0


def top_foreign(own: set[int], seconds: float = 1.0) -> tuple[float, list[str]]:
    """Cores used by processes outside this script's tree, and the busiest of them."""

    def snapshot() -> dict[int, float]:
        out: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in own:
                with contextlib.suppress(OSError, ValueError):
                    out[int(entry)] = cpu_seconds(int(entry))
        return out

    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    used = sorted(((after[p] - before[p], p) for p in after if p in before), reverse=True)
    busy = [(cpu, pid) for cpu, pid in used if cpu / seconds >= 0.05]
    lines = []
    for cpu, pid in busy[:5]:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            lines.append(f"pid {pid} {cpu / seconds:5.0%} of a core: {cmd[:100]}")
    return sum(cpu for cpu, _ in used) / seconds, lines


def gateway_command() -> list[str]:
    # Prefer the console script of the running interpreter: a plain python script, so the
    # started pid is the server itself (a pyenv shim would be bash first).
    script = Path(sys.executable).parent / "llm-gateway"
    if script.exists():
        return [str(script)]
    found = shutil.which("llm-gateway")
    if found:
        return [found]
    return [sys.executable, "-m", "llm_gateway"]


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    pid: int
    port: int
    log: Path


def gateway_config(transport: str, port: int, json_port: int, sse_port: int,
                   metrics: bool = True) -> dict[str, Any]:
    def upstream(base_url: str) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "api_key_env": API_KEY_ENV,
            "transport": transport,
            "max_connections": 256,
            "list_models": False,
            "timeouts": {"connect": 5.0, "read": 30.0, "total": 60.0},
            # No retries: a failing request must show up as an error, not as extra latency.
            "retries": {"attempts": 0, "backoff_seconds": 0.0},
        }

    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": 1, "log_level": "warning",
                   "access_log": False, "shutdown_grace_seconds": 2.0},
        "upstreams": {
            "fixed": upstream(f"http://127.0.0.1:{json_port}/v1"),
            "sse": upstream(f"http://127.0.0.1:{sse_port}/v1"),
        },
        "models": [{"name": "bench-json", "backend": "fixed"},
                   {"name": "bench-sse", "backend": "sse"}],
        "routing": {"default_backend": None, "passthrough_backend": "fixed"},
        "metrics": {"enabled": metrics},
    }


def start_gateway(tmp: Path, transport: str, json_port: int, sse_port: int,
                  pin: bool, metrics: bool = True) -> Gateway:
    port = free_port()
    stem = f"gateway-{transport}-metrics-{'on' if metrics else 'off'}"
    cfg = tmp / f"{stem}.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(transport, port, json_port, sse_port, metrics),
                                  sort_keys=False))
    log = tmp / f"{stem}.log"
    env = {**os.environ, API_KEY_ENV: API_KEY}
    cmd = pinned(GATEWAY_CORE, [*gateway_command(), "serve", "--config", str(cfg),
                                "--host", "127.0.0.1", "--port", str(port)], pin)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    gw = Gateway(proc, proc.pid, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                    break
            except urllib.error.HTTPError as exc:  # it answered, just not with 200
                print(f"  note: GET /v1/models answered {exc.code}: {exc.read()[:300]!r}")
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not answering after 60 s:\n{tail(log)}")
            time.sleep(0.1)
        gw.pid = server_pid(proc.pid, port)
    except BaseException:
        stop(proc)
        raise
    return gw


# --------------------------------------------------------------------------- wrk


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


def write_lua(tmp: Path, scenario: str) -> Path:
    path = tmp / f"{scenario}.lua"
    # Long-bracket string: the JSON needs no escaping. The key goes to nginx on direct runs
    # and is replaced by the gateway's own on gateway runs, so both paths pass nginx's check.
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{request_body(scenario)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
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
    before = cpu_seconds(cpu_pid) if cpu_pid else None
    with LoadProbe(own_pids) as probe:
        out, rc = run_wrk(url, lua, connections, args.duration, args.pin)
    result = parse_wrk(out)
    result.foreign_cores = probe.cores
    if before is not None and cpu_pid:
        result.cpu_s = cpu_seconds(cpu_pid) - before
        if result.requests:
            result.cpu_ms_per_req = result.cpu_s * 1000 / result.requests
    if rc != 0 or not result.requests:
        print(f"  wrk exited {rc}; output:\n{out}")
    p50 = fmt_ms(result.p50_ms)
    line = f"  {label:<44} {result.rps:>10.1f} req/s  p50 {p50} ms"
    if result.foreign_cores >= FOREIGN_WARN:
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


def describe_gateway(gateway: Gateway) -> None:
    cmdline = Path(f"/proc/{gateway.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    print(f"  gateway pid {gateway.pid} (launcher {gateway.proc.pid}), cores "
          f"{proc_status(gateway.pid, 'Cpus_allowed_list')}: "
          f"{cmdline.decode(errors='replace').strip()}")


# --------------------------------------------------------------------------- checks


def smoke(url: str, scenario: str) -> str | None:
    """One request before the load: None if the answer looks right, else what came back."""
    req = urllib.request.Request(
        url, data=request_body(scenario).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
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


def compare_cell(transport: str, run: dict[str, Any]) -> str:
    cpu = run["cpu_ms_per_req"]
    return (f"{transport}: {run['rps']:>7.0f} r/s {fmt_ms(run['p50_ms'])} ms "
            f"{'  n/a' if cpu is None else f'{cpu:.3f}'}")


def compare_metrics(on: dict[str, Any], off: dict[str, Any]) -> list[dict[str, Any]]:
    """Metrics on against off, run by run; the 32-connection throughput is the target."""
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
            checks.append({"check": f"{key}: metrics on >= {1 - METRICS_MAX_COST:.0%} of "
                                    "the req/s with metrics off",
                           "value": None if ratio is None else round(ratio, 3),
                           "pass": ratio is not None and ratio >= 1 - METRICS_MAX_COST})
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['check']}: {c['value']}")
    return checks


def fmt_ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


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
    p.add_argument("--rounds", type=int, default=None,
                   help="measured runs per scenario and gateway, alternating between the "
                        "gateways (default 3 with --metrics both, else 1)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 3
    if args.rounds is None:
        args.rounds = 3 if args.metrics == "both" else 1
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.duration < 1 or args.warmup < 1:
        p.error("--duration and --warmup are whole seconds >= 1 (wrk's -d)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"{tool} not found: apt-get install -y nginx wrk", file=sys.stderr)
            return 2
    cores = os.sched_getaffinity(0)
    args.pin = {0, 1} <= cores and shutil.which("taskset") is not None
    transports = ["aiohttp", "httpx"] if args.transport == "both" else [args.transport]
    metric_modes = ["off", "on"] if args.metrics == "both" else [args.metrics]

    def variant(transport: str, mode: str) -> str:
        return transport if len(metric_modes) == 1 else f"{transport}, metrics {mode}"

    # Ctrl-C raises KeyboardInterrupt; make SIGTERM do the same so `finally` cleans up.
    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    tmp = Path(tempfile.mkdtemp(prefix="llm-gw-overhead-"))
    nginx: subprocess.Popen[bytes] | None = None
    gateways: dict[str, Gateway] = {}  # running now, by metrics mode
    try:
        print(f"llm-gateway overhead benchmark: {args.duration} s runs after {args.warmup} s "
              f"warm-up, wrk -t1, transports {', '.join(transports)}, "
              f"metrics {' and '.join(metric_modes)}")
        print(f"  python {platform.python_version()}, {version(['nginx', '-v'])}, "
              f"{version(['wrk', '-v'])}, {os.cpu_count()} CPUs, "
              f"{platform.machine()} {platform.release()}")
        if args.pin:
            print(f"  pinning: gateway on core {GATEWAY_CORE}; nginx and wrk on core {LOAD_CORE}")
        else:
            print("  WARNING: fewer than 2 usable cores or no taskset; running unpinned")
        print(f"  temp dir: {tmp}")
        idle_load, busiest = top_foreign({os.getpid()})
        if idle_load >= FOREIGN_WARN:
            print(f"  WARNING: other processes use {idle_load:.0%} of a core before the runs; "
                  "figures will be low and noisy:")
            for line in busiest:
                print(f"    {line}")

        json_port, sse_port = free_port(), free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(render_nginx_conf(tmp, json_port, sse_port))
        nginx_log = tmp / "nginx.out"
        with nginx_log.open("wb") as out:
            nginx = subprocess.Popen(
                pinned(LOAD_CORE, ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
                                   "-c", str(conf)], args.pin),
                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(json_port, nginx, "nginx")
            wait_port(sse_port, nginx, "nginx")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{tail(nginx_log)}\n{tail(tmp / 'nginx-error.log')}") \
                from None

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
                print(f"\nthrough the gateway (transport {transport}, metrics {mode})")
                gateways[mode] = start_gateway(tmp, transport, json_port, sse_port, args.pin,
                                               mode == "on")
                describe_gateway(gateways[mode])
            urls = {m: f"http://127.0.0.1:{g.port}/v1/chat/completions"
                    for m, g in gateways.items()}
            smoke_problems = {m: {s: p for s in SCENARIOS if (p := smoke(urls[m], s))}
                              for m in metric_modes}
            for m, problems in smoke_problems.items():
                for s, p in problems.items():
                    print(f"  SMOKE FAIL metrics {m} {s}: {p}")
            cpu_start = {m: cpu_seconds(g.pid) for m, g in gateways.items()}
            rounds: dict[str, dict[str, list[WrkResult]]] = {m: {} for m in metric_modes}
            own = [nginx.pid, *(g.pid for g in gateways.values())]
            for s in SCENARIOS:
                for c in CONNECTIONS:
                    for i in range(args.rounds):
                        for m in (metric_modes if i % 2 == 0 else metric_modes[::-1]):
                            where = f" metrics {m}" if len(metric_modes) > 1 else ""
                            r = measure(urls[m], lua[s], c, args, gateways[m].pid, own,
                                        f"{s} c={c}{where}")
                            rounds[m].setdefault(f"{s}/c{c}", []).append(r)
            for mode in metric_modes:
                gateway = gateways[mode]
                label = variant(transport, mode)
                gw = {key: combine(runs) for key, runs in rounds[mode].items()}
                total_cpu = cpu_seconds(gateway.pid) - cpu_start[mode]
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
                    print(f"  gateway died during the runs:\n{tail(gateway.log)}")
                log_tail = tail(gateway.log, 15).strip()
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

        metrics_cost: dict[str, Any] = {}
        if len(metric_modes) > 1:
            for transport in transports:
                print(f"\nmetrics on against off (transport {transport}; CPU in ms/request)")
                metrics_cost[transport] = compare_metrics(results[variant(transport, "on")],
                                                          results[variant(transport, "off")])

        disturbed = [f"{where} {key} ({r['foreign_cores']:.0%})"
                     for where, runs in [("direct", {k: asdict(v) for k, v in direct.items()}),
                                         *((f"gateway/{t}", r["runs"])
                                           for t, r in results.items())]
                     for key, r in runs.items() if r["foreign_cores"] >= FOREIGN_WARN]
        if disturbed:
            print(f"\nWARNING: {len(disturbed)} runs shared the 2 cores with other processes "
                  f"(share of a core): {', '.join(disturbed)}")
        all_pass = all(c["pass"] for r in results.values() for c in r["checks"]) and all(
            c["pass"] for checks in metrics_cost.values() for c in checks)
        if args.json:
            Path(args.json).write_text(json.dumps({
                "duration_s": args.duration, "warmup_s": args.warmup, "pinned": args.pin,
                "content_chunks": CONTENT_CHUNKS, "python": platform.python_version(),
                "direct": {k: asdict(v) for k, v in direct.items()},
                "gateway": results, "metrics_cost": metrics_cost, "all_pass": all_pass,
                "disturbed_runs": disturbed,
                "foreign_load_before_cores": idle_load,
            }, indent=2))
            print(f"\nwrote {args.json}")
        return 1 if args.strict and not all_pass else 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    finally:
        # Ignore a second Ctrl-C/SIGTERM while tearing down, so nothing is left running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for running in gateways.values():
            stop(running.proc, running.pid)
        stop(nginx)
        if args.keep_temp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
