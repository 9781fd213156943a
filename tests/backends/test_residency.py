"""On-demand loads, waiting, idle unloads and eviction (backends/residency.py), over fake
models that become ready a few milliseconds after their workers start (residency_fakes.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from llm_gateway.backends.residency import NoRoom, Residency
from llm_gateway.errors import ServiceUnavailable

from residency_fakes import FakeModel, residency_of, sample

Make = Callable[..., Awaitable[tuple[Residency, Any]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Residency] = []

    async def build(*models: FakeModel, **placement: Any) -> tuple[Residency, Any]:
        residency, metrics = await residency_of(*models, **placement)
        made.append(residency)
        return residency, metrics

    yield build
    for residency in made:
        await residency.aclose()


async def use(residency: Residency, name: str) -> None:
    async with residency.serving(name):
        pass


def states(residency: Residency) -> dict[str, str]:
    return {name: slot.state for name, slot in residency.slots.items()}


async def test_concurrent_first_requests_start_one_load(make: Make) -> None:
    a = FakeModel("a", load="on_demand", load_seconds=0.1)
    residency, metrics = await make(a)
    assert states(residency) == {"a": "unloaded"} and a.starts == []
    await asyncio.gather(*(use(residency, "a") for _ in range(5)))
    assert a.starts == [[None]] and states(residency) == {"a": "loaded"}
    slot = residency.slots["a"]
    assert slot.loads == 1 and slot.load_seconds is not None and slot.load_seconds >= 0.1
    assert sample(metrics, "llm_gateway_local_model_loads_total", model="a", outcome="ok") == 1
    assert sample(metrics, "llm_gateway_local_models_loaded") == 1


async def test_the_least_recently_used_idle_model_is_evicted(make: Make) -> None:
    a, b, c = (FakeModel(n, load="on_demand") for n in "abc")
    residency, metrics = await make(a, b, c, cpu_memory_mib=250)  # two of 100 MiB fit
    for name in "aba":
        await use(residency, name)
    assert states(residency) == {"a": "loaded", "b": "loaded", "c": "unloaded"}
    await use(residency, "c")
    assert states(residency) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
    assert (a.stops, b.stops) == (0, 1)
    assert sample(metrics, "llm_gateway_local_model_evictions_total", model="b",
                  reason="memory") == 1
    assert sample(metrics, "llm_gateway_local_model_unloads_total", model="b",
                  reason="memory") == 1
    assert sample(metrics, "llm_gateway_local_device_memory_mib", device="cpu",
                  kind="budget") == 250


async def test_a_busy_model_is_not_evicted_the_request_waits(make: Make) -> None:
    a, b = FakeModel("a", load="on_demand"), FakeModel("b", load="on_demand")
    residency, _ = await make(a, b, cpu_memory_mib=150)  # one at a time
    await use(residency, "a")
    a.busy = 1  # a stream on its worker
    waiting = asyncio.ensure_future(use(residency, "b"))
    await asyncio.sleep(0.3)
    assert not waiting.done() and states(residency)["a"] == "loaded" and a.stops == 0
    assert residency.slots["b"].waiting == 1
    a.busy = 0
    residency.released("a")  # the stream ended
    await asyncio.wait_for(waiting, 5)
    assert states(residency) == {"a": "unloaded", "b": "loaded"}


async def test_with_a_fallback_the_request_spills_instead_of_waiting(make: Make) -> None:
    a = FakeModel("a", load="on_demand")
    b = FakeModel("b", load="on_demand", fallback="elsewhere")
    residency, _ = await make(a, b, cpu_memory_mib=150)
    async with residency.serving("a"):  # inside a's call: busy
        with pytest.raises(NoRoom, match="does not fit in memory now: the models holding"):
            await use(residency, "b")
    assert states(residency) == {"a": "loaded", "b": "unloaded"}


async def test_a_model_that_can_never_fit_is_refused_at_once(make: Make) -> None:
    big = FakeModel("big", load="on_demand", memory_mib=500)
    residency, _ = await make(big, cpu_memory_mib=250)
    with pytest.raises(NoRoom, match=r"does not fit in memory: it needs 500 MiB"):
        await asyncio.wait_for(use(residency, "big"), 2)


async def test_an_idle_model_is_unloaded_after_its_ttl(make: Make) -> None:
    a = FakeModel("a", load="on_demand", idle_unload_seconds=0.3)
    residency, metrics = await make(a)
    async with residency.serving("a"):
        await asyncio.sleep(0.5)  # in use past the TTL: stays
        assert states(residency) == {"a": "loaded"}
    a.busy = 1
    await asyncio.sleep(0.5)  # a stream still on its worker: stays
    assert states(residency) == {"a": "loaded"}
    a.busy = 0
    residency.released("a")
    await asyncio.sleep(0.15)
    assert states(residency) == {"a": "loaded"}
    await asyncio.sleep(0.4)
    assert states(residency) == {"a": "unloaded"} and a.stops == 1
    assert sample(metrics, "llm_gateway_local_model_unloads_total", model="a",
                  reason="idle") == 1


async def test_pinned_and_resident_models_stay(make: Make) -> None:
    resident = FakeModel("resident")
    pinned = FakeModel("pinned", load="on_demand", pinned=True)
    other = FakeModel("other", load="on_demand")
    residency, _ = await make(resident, pinned, other, cpu_memory_mib=350)
    assert resident.starts == [[None]]  # at start, as before
    await asyncio.sleep(0.1)
    await use(residency, "pinned")
    await use(residency, "other")
    await use(residency, "other")  # pinned is now the least recently used
    late = FakeModel("late", load="on_demand")
    residency.add(late)
    await use(residency, "late")
    assert states(residency) == {"resident": "loaded", "pinned": "loaded",
                                 "other": "unloaded", "late": "loaded"}


async def test_exclusive_members_swap_and_together_members_stay(make: Make) -> None:
    x, y = FakeModel("x", load="on_demand"), FakeModel("y", load="on_demand")
    a, b = FakeModel("a", load="on_demand"), FakeModel("b", load="on_demand")
    groups = {"swap": {"models": ["x", "y"], "mode": "exclusive"},
              "pair": {"models": ["a", "b"], "mode": "together"}}
    residency, metrics = await make(x, y, a, b, cpu_memory_mib=250, groups=groups)
    await use(residency, "x")
    await use(residency, "y")  # room for both, but they exclude each other
    assert states(residency) == {"x": "unloaded", "y": "loaded", "a": "unloaded",
                                 "b": "unloaded"}
    assert sample(metrics, "llm_gateway_local_model_evictions_total", model="x",
                  reason="exclusive") == 1
    await use(residency, "a")
    await use(residency, "y")  # a is now the least recently used...
    await use(residency, "b")  # ...but it goes with b: y makes the room
    assert states(residency) == {"x": "unloaded", "y": "unloaded", "a": "loaded",
                                 "b": "loaded"}


async def test_a_failed_load_answers_503_and_a_later_request_loads(make: Make) -> None:
    a = FakeModel("a", load="on_demand")
    a.fail = "its worker exited"
    residency, metrics = await make(a)
    with pytest.raises(ServiceUnavailable) as info:
        await use(residency, "a")
    assert info.value.code == "model_load_failed" and info.value.headers["retry-after"]
    assert "failed to load: its worker exited" in info.value.message
    slot = residency.slots["a"]
    assert (slot.state, slot.last_error, a.stops) == ("unloaded", "its worker exited", 1)
    await use(residency, "a")
    assert slot.state == "loaded" and slot.last_error is None
    assert sample(metrics, "llm_gateway_local_model_loads_total", model="a",
                  outcome="failed") == 1


async def test_waiting_is_bounded_in_time_and_in_number(make: Make) -> None:
    slow = FakeModel("slow", load="on_demand", load_seconds=0.6, load_timeout_seconds=0.2,
                     max_waiting=1)
    residency, _ = await make(slow)
    first = asyncio.ensure_future(use(residency, "slow"))
    await asyncio.sleep(0.05)
    with pytest.raises(ServiceUnavailable, match="requests are already waiting") as full:
        await use(residency, "slow")
    with pytest.raises(ServiceUnavailable, match=r"waited load_timeout_seconds \(0.2 s\)") as late:
        await first
    assert full.value.code == late.value.code == "model_loading"
    assert late.value.headers == {"retry-after": "5"}  # no load time known yet
    await asyncio.sleep(0.6)  # the load went on without its waiters
    assert residency.slots["slow"].state == "loaded" and slow.starts == [[None]]
    await use(residency, "slow")
