"""Helpers shared by the benchmark scripts under bench/: ports, child processes, CPU accounting.

Scripts import it by path (bench/ is not a package):

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import common

Everything here reads /proc, so it is Linux-only, like the benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import os
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

FOREIGN_WARN = 0.05  # cores of other load that make a run's figures suspect


# --------------------------------------------------------------------------- a script's run


def exit_codes(main: Callable[..., int]) -> Callable[..., int]:
    """A benchmark's main(): Ctrl-C (or SIGTERM, see `session`) exits 130, a failure to set up
    or measure (a server that does not start, a tool that fails) exits 2 with its message."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 2

    return wrapped


@contextlib.contextmanager
def session(prefix: str, keep_temp: bool) -> Iterator[tuple[Path, contextlib.ExitStack]]:
    """A temp dir and a stack of clean-ups, run however the block ends.

    SIGTERM raises KeyboardInterrupt like Ctrl-C, so a killed benchmark still stops what it
    started; while cleaning up, a second Ctrl-C/SIGTERM is ignored, so nothing is left
    running. Register clean-ups with ``stack.callback(...)``; they run last-first.
    """

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    stack = contextlib.ExitStack()
    try:
        yield tmp, stack
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()
        if keep_temp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- ports and HTTP


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick; racy, but fine for a bench)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status a GET of ``url`` answers, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes] | None, what: str,
             timeout: float, log: Path | None = None, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail early if ``proc`` exits, or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}"
                               + (f":\n{tail(log)}" if log else ""))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s"
                               + (f":\n{tail(log)}" if log else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- processes


def console_script(name: str, module: str) -> list[str]:
    """The command for a console script: the one next to this interpreter first.

    Next to ``sys.executable`` it is a plain python script, so the started pid is the program
    itself; a shim found on PATH (pyenv) would be a shell first. ``module`` is the fallback
    (``python -m module``).
    """
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", module]


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with stdout and stderr to ``log``, in its own process group.

    ``cwd``: where it runs. A gateway started from a source tree (``PYTHONPATH``) must not run
    in this checkout: it spawns its workers with ``python -m``, which imports the package in
    the working directory before anything on ``PYTHONPATH``.
    """
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 15.0,
         first: int | None = None) -> list[int]:
    """SIGTERM ``proc``, then SIGKILL after ``grace`` s; then the same for any descendant it left.

    ``first``, a descendant of ``proc`` (the server below a wrapper that forks), is stopped the
    same way before ``proc``, so it shuts down cleanly instead of being orphaned.

    Only ever signals ``proc`` and the processes it started (found through /proc before it is
    signalled). Returns the pids that had to be killed after the grace period.
    """
    if proc is None:
        return []
    family = [p for p in descendants(proc.pid) if p != proc.pid]
    killed: list[int] = []
    if first and first != proc.pid and alive(first):
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(first):
            with contextlib.suppress(ProcessLookupError):
                os.kill(first, signal.SIGKILL)
                killed.append(first)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            killed.append(proc.pid)
    # A well-behaved parent stops its children itself; whatever is still there was left behind.
    left = [p for p in family if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, parents before children."""
    children = parent_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (fields 14 and 15 of proc(5))."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    total = 0.0
    for root in roots:
        for pid in descendants(root):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += cpu_seconds(pid)
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (steal included: the host took them from us)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time, threads included (reaped children are not counted here)."""
    return time.process_time()


def self_and_children_cpu_seconds() -> float:
    """This process's CPU time plus that of its reaped children (getrusage)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class LoadProbe:
    """CPU that processes outside ours burn during a block, in cores.

    The machine's busy time minus that of this process and the process trees in ``own``. On a
    2-core machine anything else running skews every figure, so the scripts say so.
    ``children``: also count this process's reaped children as its own (a load generator such
    as wrk run to completion as a direct child).
    """

    def __init__(self, own: Iterable[int], children: bool = False) -> None:
        self.own = list(own)
        self.children = children
        self.cores = 0.0

    def _own(self) -> float:
        mine = self_and_children_cpu_seconds() if self.children else own_cpu_seconds()
        return mine + tree_cpu_seconds(self.own)

    def __enter__(self) -> LoadProbe:
        self.t0, self.busy0, self.own0 = time.monotonic(), machine_busy_seconds(), self._own()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.t0
        foreign = (machine_busy_seconds() - self.busy0) - (self._own() - self.own0)
        self.cores = max(0.0, foreign / wall) if wall > 0 else 0.0


def top_foreign(own: set[int], seconds: float = 1.0) -> tuple[float, list[str]]:
    """Cores used by processes outside ``own`` over ``seconds``, and the busiest of them."""

    def snapshot() -> dict[int, float]:
        out: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in own:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    out[int(entry)] = cpu_seconds(int(entry))
        return out

    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    used = sorted(((after[p] - before[p], p) for p in after if p in before), reverse=True)
    lines = [f"pid {pid} {cpu / seconds:5.0%} of a core: {cmdline(pid)[:100]}"
             for cpu, pid in used[:5] if cpu / seconds >= FOREIGN_WARN]
    return sum(cpu for cpu, _ in used) / seconds, lines
