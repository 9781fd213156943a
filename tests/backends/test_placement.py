"""Fitting models into the budget (backends/placement.py): GPU choice, LRU eviction, groups,
busy and permanent models, and the "never fits" answer."""

from __future__ import annotations

from llm_gateway.backends.placement import (
    Blocked,
    Booking,
    Budget,
    Candidate,
    Need,
    Plan,
    booking_of,
    fit,
    plan,
)

HOST_ONLY = Budget(host=1000)


def cpu(name: str, mib: int, last_used: float, **kw) -> Candidate:
    settings = {"evictable": True, "permanent": False, **kw}
    return Candidate(name, Booking({}, mib), last_used=last_used, **settings)


def on_gpu(name: str, gpu: int, mib: int, last_used: float, **kw) -> Candidate:
    settings = {"evictable": True, "permanent": False, **kw}
    return Candidate(name, Booking({gpu: mib}, 50), last_used=last_used, **settings)


def test_a_model_that_fits_evicts_nothing() -> None:
    result = plan(Need(1, 0, 400), HOST_ONLY, [cpu("a", 400, 1.0)])
    assert isinstance(result, Plan)
    assert (result.victims, result.gpus, result.booking) == ([], [None], Booking({}, 400))


def test_the_least_recently_used_idle_model_goes_first() -> None:
    others = [cpu("old", 400, 1.0), cpu("new", 400, 2.0)]
    result = plan(Need(1, 0, 400), HOST_ONLY, others)
    assert isinstance(result, Plan) and result.victims == [("old", "memory")]


def test_busy_and_permanent_models_are_not_evicted() -> None:
    others = [cpu("busy", 400, 1.0, evictable=False), cpu("pinned", 400, 0.5, evictable=False,
                                                          permanent=True)]
    result = plan(Need(1, 0, 400), HOST_ONLY, others)
    assert result == Blocked("the models holding the memory it needs are in use or loading")
    # With only the busy one in the way, the pinned one stays and the other idle one goes.
    others[0] = cpu("idle", 400, 3.0)
    result = plan(Need(1, 0, 400), HOST_ONLY, others)
    assert isinstance(result, Plan) and result.victims == [("idle", "memory")]


def test_too_big_even_with_everything_unloaded_never_fits() -> None:
    result = plan(Need(2, 0, 400), HOST_ONLY, [cpu("pinned", 400, 1.0, evictable=False,
                                                   permanent=True)])
    assert isinstance(result, Blocked) and result.never
    assert result.reason == ("it needs 800 MiB of host memory (2 x 400); placement."
                             "cpu_memory_mib is 1,000, of which models that stay loaded hold 400")
    # A busy model will be idle some day: that is no "never".
    result = plan(Need(2, 0, 400), HOST_ONLY, [cpu("busy", 400, 1.0, evictable=False)])
    assert isinstance(result, Blocked) and not result.never


def test_only_models_holding_the_short_memory_are_evicted() -> None:
    budget = Budget(gpus={0: 1000, 1: 1000}, host=10_000)
    others = [cpu("cpu-only", 3000, 0.0), on_gpu("g0", 0, 900, 1.0), on_gpu("g1", 1, 500, 2.0)]
    result = plan(Need(1, 800, 100), budget, others)
    # The CPU-only model frees no GPU memory; g0 is older than g1, and freeing it is enough.
    assert isinstance(result, Plan)
    assert result.victims == [("g0", "memory")] and result.gpus == [0]


def test_victims_not_needed_after_all_are_spared() -> None:
    # Two small old models, then a big one: evicting the big one alone would have done.
    others = [cpu("s1", 100, 1.0), cpu("s2", 100, 2.0), cpu("big", 600, 3.0)]
    result = plan(Need(1, 0, 600), HOST_ONLY, others)
    assert isinstance(result, Plan) and result.victims == [("big", "memory")]


def test_together_members_go_last_and_exclusive_ones_first() -> None:
    others = [cpu("partner", 400, 1.0, together=True), cpu("stranger", 400, 2.0)]
    result = plan(Need(1, 0, 400), HOST_ONLY, others)
    assert isinstance(result, Plan) and result.victims == [("stranger", "memory")]
    # An exclusive member is unloaded even when there is room; a busy one blocks the load.
    result = plan(Need(1, 0, 100), HOST_ONLY, [cpu("rival", 100, 5.0, exclusive=True)])
    assert isinstance(result, Plan) and result.victims == [("rival", "exclusive")]
    result = plan(Need(1, 0, 100), HOST_ONLY, [cpu("rival", 100, 5.0, exclusive=True,
                                                   evictable=False)])
    assert isinstance(result, Blocked) and "in use" in result.reason


def test_workers_go_to_the_gpu_with_the_most_room() -> None:
    budget = Budget(gpus={0: 1000, 1: 1000})
    assert fit(Need(2, 400, 10), budget, Booking({0: 300})) == [1, 0]
    assert fit(Need(3, 400, 10), budget, Booking({0: 300})) == [1, 0, 1]
    assert fit(Need(3, 400, 10), budget, Booking({0: 300, 1: 300})) is None
    result = plan(Need(1, 900, 10), budget, [on_gpu("p", 0, 300, 1.0, evictable=False,
                                                    permanent=True), on_gpu("q", 1, 200, 2.0,
                                                                            permanent=True,
                                                                            evictable=False)])
    assert isinstance(result, Blocked) and result.never
    assert result.reason == ("each of its 1 worker(s) needs 900 MiB on one GPU; GPU 0: 1,000 "
                             "MiB (300 held by models that stay loaded), GPU 1: 1,000 MiB (200 "
                             "held by models that stay loaded)")
    # An entry's own gpus are kept, and checked.
    assert fit(Need(1, 400, 10, (0,)), budget, Booking({0: 300})) == [0]
    assert fit(Need(1, 800, 10, (0,)), budget, Booking({0: 300})) is None
    # No GPU in the budget: nothing checked, nothing chosen.
    assert fit(Need(2, 10**9, 10), Budget(), Booking()) == [None, None]
    # A GPU with no known limit takes anything.
    assert fit(Need(1, 10**9, 10), Budget(gpus={0: None}), Booking({0: 5})) == [0]


def test_a_worker_on_no_gpu_in_particular_is_booked_on_each() -> None:
    budget = Budget(gpus={0: 1000, 1: 1000})
    assert booking_of(Need(1, 500, 10), [None], budget) == Booking({0: 250, 1: 250}, 10)
    assert booking_of(Need(2, 500, 10), [0, 1], budget) == Booking({0: 500, 1: 500}, 20)
    assert booking_of(Need(1, 0, 10), [None], budget) == Booking({}, 10)
