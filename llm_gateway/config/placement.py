"""`placement:` — the memory local models may use, and which of them go together.

The budget is per GPU (`gpus`, else what NVML reports when `nvml` is on and
`nvidia-ml-py` is installed) and for host memory (`cpu_memory_mib`); the loaded models' needs
(estimated from their GGUF files, or `local.<name>.memory_mib`) must fit it. Groups say which
`local:` models may stay loaded together (`together`: evicted for each other only as a last
resort) or exclude each other (`exclusive`: loading one unloads the others). The rules live in
backends/residency.py and backends/placement.py; the checks spanning these keys and the
`local:` entries in placement_checks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .checks import non_empty

GroupMode = Literal["together", "exclusive"]


@dataclass(frozen=True)
class GpuBudget:
    id: int = field(metadata={"ge": 0})  # as in CUDA_VISIBLE_DEVICES and `local.<name>.gpus`
    # MiB the local models may use there; None: NVML's total less `headroom_mib`.
    memory_mib: int | None = field(default=None, metadata={"ge": 1})


def _names(value: list[str]) -> str | None:
    if not value:
        return "must name at least one local model"
    for name in value:
        if problem := non_empty(name):
            return problem
    return None


@dataclass(frozen=True)
class ModelGroup:
    models: list[str] = field(metadata={"check": _names})  # `local:` names
    mode: GroupMode = "together"


@dataclass(frozen=True)
class PlacementConfig:
    gpus: list[GpuBudget] = field(default_factory=list)  # empty: NVML's GPUs, else no limit
    cpu_memory_mib: int | None = field(default=None, metadata={"ge": 1})  # None: no limit
    nvml: Literal["auto", "off"] = "auto"  # auto: used when nvidia-ml-py is installed
    headroom_mib: int = field(default=512, metadata={"ge": 0})  # kept free of NVML's total
    groups: dict[str, ModelGroup] = field(default_factory=dict)
