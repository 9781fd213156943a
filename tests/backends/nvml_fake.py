"""A stand-in for `pynvml` (nvidia-ml-py): the few NVML calls backends/nvml.py makes, over
numbers a test sets. No GPU is needed; the real module has the same names and shapes."""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1 << 20


class NVMLError(Exception):
    pass


@dataclass
class _Memory:
    total: int
    used: int
    free: int


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int | None


@dataclass
class FakeGpu:
    total_mib: int
    used_mib: int = 0
    processes: dict[int, int | None] = field(default_factory=dict)  # pid -> MiB (None: n/a)


class FakeNvml:
    """Passed where `pynvml` would be imported; `fail` makes the named call raise."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], *, fail: set[str] | None = None) -> None:
        self.gpus = gpus
        self.fail = fail or set()
        self.initialised = False
        self.shut_down = False

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise NVMLError(f"{name} failed")

    def nvmlInit(self) -> None:
        self._check("nvmlInit")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> _Memory:
        self._check("nvmlDeviceGetMemoryInfo")
        used = gpu.used_mib + sum(m or 0 for m in gpu.processes.values())
        return _Memory(gpu.total_mib * MIB, used * MIB, (gpu.total_mib - used) * MIB)

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[_Process]:
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [_Process(pid, None if mib is None else mib * MIB)
                for pid, mib in gpu.processes.items()]
