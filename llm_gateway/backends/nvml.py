"""GPU memory through NVML (`nvidia-ml-py`, imported as ``pynvml``), when it is installed.

Optional: without the package, or without a driver, `open_nvml` returns None and the budget
comes from the config alone. What is read: each GPU's total, used and free memory, and the
memory each process holds on it (our workers' pids, to tell their use from other programs').
NVML numbers GPUs by PCI bus; CUDA does so too only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
(docs/local-workers.md says to set it when GPUs differ).

Every call goes through the module object given to `Nvml`, so tests pass a small fake with
the same functions (tests/backends/test_nvml.py).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass(frozen=True)
class GpuMemory:
    index: int
    total_mib: int
    used_mib: int
    free_mib: int


class Nvml:
    """An initialised NVML; every read returns what it could get (errors are logged once)."""

    def __init__(self, lib: ModuleType | Any) -> None:
        self._lib = lib
        self._warned: set[str] = set()
        lib.nvmlInit()

    def gpus(self) -> list[GpuMemory]:
        lib = self._lib
        out = []
        try:
            count = lib.nvmlDeviceGetCount()
        except Exception as exc:
            self._warn("count", exc)
            return []
        for index in range(count):
            try:
                info = lib.nvmlDeviceGetMemoryInfo(lib.nvmlDeviceGetHandleByIndex(index))
            except Exception as exc:
                self._warn(f"memory of GPU {index}", exc)
                continue
            out.append(GpuMemory(index, info.total // MIB, info.used // MIB, info.free // MIB))
        return out

    def process_mib(self) -> dict[int, dict[int, int]]:
        """pid -> {GPU index: MiB it holds there}, for every compute process NVML lists."""
        lib = self._lib
        out: dict[int, dict[int, int]] = {}
        try:
            count = lib.nvmlDeviceGetCount()
        except Exception as exc:
            self._warn("count", exc)
            return out
        for index in range(count):
            try:
                procs = lib.nvmlDeviceGetComputeRunningProcesses(
                    lib.nvmlDeviceGetHandleByIndex(index))
            except Exception as exc:
                self._warn(f"processes of GPU {index}", exc)
                continue
            for proc in procs:
                used = getattr(proc, "usedGpuMemory", None)
                if isinstance(used, int):  # None where the driver does not say (some VMs)
                    out.setdefault(int(proc.pid), {})[index] = used // MIB
        return out

    def close(self) -> None:
        try:
            self._lib.nvmlShutdown()
        except Exception as exc:
            self._warn("shutdown", exc)

    def _warn(self, what: str, exc: Exception) -> None:
        if what not in self._warned:  # a failing driver would otherwise log every few seconds
            self._warned.add(what)
            log.warning("NVML: cannot read the %s: %s", what, exc)


def open_nvml(mode: str, lib: ModuleType | Any | None = None) -> Nvml | None:
    """NVML when ``mode`` is "auto" and it can be initialised; None otherwise."""
    if mode == "off":
        return None
    if lib is None:
        try:
            lib = importlib.import_module("pynvml")  # nvidia-ml-py; untyped, so by name
        except ImportError:
            return None
    try:
        nvml = Nvml(lib)
    except Exception as exc:  # no driver, no GPU: the budget comes from the config
        log.info("NVML not available (%s); GPU memory is budgeted from the config", exc)
        return None
    log.info("NVML: %d GPU(s)", len(nvml.gpus()))
    return nvml
