"""The worker's default thread count: one per physical core it may use, as llama-server."""

from __future__ import annotations

from pathlib import Path

from llm_gateway.worker import threads


def _cpu(root: Path, cpu: int, package: int, core: int) -> None:
    topology = root / f"cpu{cpu}" / "topology"
    topology.mkdir(parents=True)
    (topology / "physical_package_id").write_text(f"{package}\n")
    (topology / "core_id").write_text(f"{core}\n")


def test_smt_siblings_count_once(tmp_path: Path) -> None:
    for cpu in range(8):  # 2 packages x 2 cores x 2 threads
        _cpu(tmp_path, cpu, cpu // 4, (cpu // 2) % 2)
    assert threads.physical_cores(set(range(8)), tmp_path) == 4
    assert threads.physical_cores({0, 1}, tmp_path) == 1  # affinity: one core's two threads
    assert threads.physical_cores({0, 2, 5}, tmp_path) == 3


def test_unknown_topology_counts_every_cpu(tmp_path: Path) -> None:
    assert threads.physical_cores({0, 1, 2}, tmp_path) == 3


def test_a_cgroup_quota_caps_the_threads(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert threads.quota_cores(cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert threads.quota_cores(cpu_max) is None
    assert threads.quota_cores(tmp_path / "absent") is None


def test_the_default_is_at_least_one_and_at_most_the_usable_cpus() -> None:
    import os

    n = threads.default_threads()
    assert 1 <= n <= len(os.sched_getaffinity(0))
