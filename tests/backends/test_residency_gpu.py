"""Placement on GPUs read through NVML (a fake of its calls: tests/backends/nvml_fake.py):
the budget from the GPUs' totals, other programs' use taken off, the GPU with the most room
chosen, what the workers hold read back per process, and the view GET /admin/models shows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm_gateway.backends.residency import Residency
from llm_gateway.backends.residency_view import device_views, model_view

from nvml_fake import FakeGpu, FakeNvml
from residency_fakes import FakeModel, residency_of, sample


@pytest.fixture
async def gpus() -> AsyncIterator[tuple[Residency, object, FakeNvml, dict[str, FakeModel]]]:
    # 10 GiB each; another program holds 3,000 MiB of GPU 1.
    lib = FakeNvml([FakeGpu(10_000), FakeGpu(10_000, used_mib=3000)])
    models = {n: FakeModel(n, load="on_demand", n_gpu_layers=-1, memory_mib=5000) for n in "abc"}
    residency, metrics = await residency_of(*models.values(), nvml_lib=lib)
    yield residency, metrics, lib, models
    await residency.aclose()


async def use(residency: Residency, name: str) -> None:
    async with residency.serving(name):
        pass


async def test_the_budget_comes_from_nvml_less_headroom_and_other_programs(gpus) -> None:
    residency, metrics, _, _ = gpus
    assert residency.budget().gpus == {0: 10_000 - 512, 1: 10_000 - 512 - 3000}
    assert sample(metrics, "llm_gateway_local_device_memory_mib", device="gpu1",
                  kind="budget") == 6488
    assert sample(metrics, "llm_gateway_local_device_memory_mib", device="gpu1",
                  kind="used") == 3000


async def test_workers_go_where_there_is_room_and_evict_when_there_is_none(gpus) -> None:
    residency, metrics, lib, models = gpus
    await use(residency, "a")
    assert models["a"].starts == [[0]]  # 9,488 MiB free there against 6,488
    # The worker holds 5,200 MiB: NVML says so, and it is not counted as another program's.
    lib.gpus[0].processes[models["a"].pids[0]] = 5200
    residency.refresh()
    assert residency.budget().gpus == {0: 9488, 1: 6488}
    assert residency.slots["a"].used is not None and residency.slots["a"].used.gpu == {0: 5200}
    await use(residency, "b")
    assert models["b"].starts == [[1]]  # 4,488 left on GPU 0
    await use(residency, "c")  # fits nowhere: a, the least recently used, goes
    assert models["c"].starts == [[0]]
    assert {n: s.state for n, s in residency.slots.items()} == {
        "a": "unloaded", "b": "loaded", "c": "loaded"}
    assert sample(metrics, "llm_gateway_local_model_memory_mib", model="c", device="gpu0",
                  kind="estimated") == 5000


async def test_the_admin_view_of_models_and_devices(gpus) -> None:
    residency, _, lib, models = gpus
    await use(residency, "b")
    lib.gpus[0].processes[models["b"].pids[0]] = 4800
    residency.refresh()
    view = model_view(residency, residency.slots["b"])
    assert view["state"] == "loaded" and view["gpus"] == [0] and view["loads"] == 1
    assert view["memory_source"] == "memory_mib" and view["estimated_mib"] == 5000
    assert view["memory"]["gpu0"] == {"estimated_mib": 5000, "used_mib": 4800}
    assert view["memory"]["cpu"]["estimated_mib"] == 0  # nothing known of its host side
    unloaded = model_view(residency, residency.slots["a"])
    assert unloaded["state"] == "unloaded" and unloaded["memory"]["gpu"]["estimated_mib"] == 5000
    devices = {d["device"]: d for d in device_views(residency)}
    assert devices["gpu0"] == {"device": "gpu0", "budget_mib": 9488, "booked_mib": 5000,
                               "total_mib": 10_000, "used_mib": 4800}
    assert devices["cpu"]["budget_mib"] is None
