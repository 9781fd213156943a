"""How many threads llama.cpp gets when the config names none: one per physical core.

llama-cpp-python's own default is half the logical CPUs for generation and all of them for
prompts; llama-server's is one per physical core for both (its `cpu_get_num_math`). On a
machine without SMT the former halves single-stream decode speed, so the worker follows
llama-server: the same threads, and a default that is the fast configuration.

Only CPUs this process may run on count (its affinity, a container's cpuset), and a cgroup
CPU quota caps the figure: threads beyond the cores actually granted wait on each other.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sys_cpu: Path = _SYS_CPU) -> int:
    """Distinct cores among `cpus` (SMT siblings counted once); len(cpus) if unknown."""
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def quota_cores(cpu_max: Path = _CGROUP_CPU_MAX) -> int | None:
    """Cores a cgroup v2 CPU quota allows (rounded up); None without a quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def default_threads() -> int:
    """Threads for generation and prompts alike when none are configured."""
    cpus = _usable_cpus()
    threads = physical_cores(cpus) if cpus else (os.cpu_count() or 1)
    quota = quota_cores()
    return max(1, min(threads, quota) if quota is not None else threads)
