"""Reading GPU memory through NVML (backends/nvml.py), against a fake of the NVML calls."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from llm_gateway.backends.nvml import GpuMemory, Nvml, open_nvml

from nvml_fake import FakeGpu, FakeNvml


def test_off_means_no_nvml_even_when_it_is_there() -> None:
    lib = FakeNvml([FakeGpu(1000)])
    assert open_nvml("off", lib) is None
    assert not lib.initialised


def test_gpus_and_process_memory() -> None:
    lib = FakeNvml([FakeGpu(80_000, used_mib=500, processes={11: 4000, 12: None}),
                    FakeGpu(40_000, processes={11: 1000, 13: 2000})])
    nvml = open_nvml("auto", lib)
    assert isinstance(nvml, Nvml) and lib.initialised
    assert nvml.gpus() == [GpuMemory(0, 80_000, 4500, 75_500), GpuMemory(1, 40_000, 3000, 37_000)]
    # pid 12's use is not reported by the driver: left out rather than counted as 0.
    assert nvml.process_mib() == {11: {0: 4000, 1: 1000}, 13: {1: 2000}}
    nvml.close()
    assert lib.shut_down


def test_no_driver_means_no_nvml() -> None:
    assert open_nvml("auto", FakeNvml([], fail={"nvmlInit"})) is None


def test_a_failing_call_is_logged_once_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    lib = FakeNvml([FakeGpu(1000), FakeGpu(2000)], fail={"nvmlDeviceGetMemoryInfo"})
    nvml = Nvml(lib)
    with caplog.at_level(logging.WARNING, logger="llm_gateway.backends.nvml"):
        assert nvml.gpus() == []
        assert nvml.gpus() == []
    assert [r.getMessage() for r in caplog.records] == [
        "NVML: cannot read the memory of GPU 0: nvmlDeviceGetMemoryInfo failed",
        "NVML: cannot read the memory of GPU 1: nvmlDeviceGetMemoryInfo failed"]
    lib.fail = {"nvmlDeviceGetComputeRunningProcesses"}
    assert nvml.process_mib() == {}


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None,
                    reason="nvidia-ml-py is installed here")
def test_without_the_package_there_is_no_nvml() -> None:
    assert open_nvml("auto") is None
