"""The balancing rule and the affinity key, without any worker running."""

from __future__ import annotations

import asyncio

from llm_gateway.backends.local import affinity_key
from llm_gateway.backends.pool import AFFINITY_SLACK, Worker, WorkerPool, choose
from llm_gateway.call import Call


def workers(*outstanding: int) -> list[Worker]:
    return [Worker(index=i, healthy=True, outstanding=n) for i, n in enumerate(outstanding)]


def chat_call(messages: list[dict], model: str = "smol") -> Call:
    body = {"model": model, "messages": messages}
    return Call(operation="createChatCompletion", endpoint="/chat/completions", model=model,
                body=body, raw=b"", stream=False, request_id="r")


def key_for(n: int) -> bytes:
    return affinity_key(chat_call([{"role": "user", "content": f"conversation {n}"}])) or b""


def test_least_outstanding_without_a_key() -> None:
    assert choose(workers(3, 1, 2), None).index == 1
    # Ties rotate, so idle workers share the load.
    picks = {choose(workers(0, 0, 5), None, turn=t).index for t in range(4)}
    assert picks == {0, 1}
    assert choose([], None) is None


def test_affinity_sticks_unless_much_busier() -> None:
    pool = workers(0, 0, 0)
    key = key_for(1)
    preferred = choose(pool, key)
    assert all(choose(pool, key, turn=t) is preferred for t in range(5))
    # One more in flight than the others: still worth waiting for (its prefix is cached).
    preferred.outstanding = AFFINITY_SLACK - 1
    assert choose(pool, key) is preferred
    # Much busier: the least-loaded worker takes the request instead.
    preferred.outstanding = AFFINITY_SLACK
    chosen = choose(pool, key)
    assert chosen is not preferred and chosen.outstanding == 0


def test_rendezvous_moves_only_the_keys_of_a_missing_worker() -> None:
    pool = workers(0, 0, 0, 0)
    before = {n: choose(pool, key_for(n)).index for n in range(200)}
    assert set(before.values()) == {0, 1, 2, 3}  # keys spread over every worker
    without_2 = [w for w in pool if w.index != 2]
    after = {n: choose(without_2, key_for(n)).index for n in range(200)}
    for n in range(200):
        if before[n] != 2:
            assert after[n] == before[n]
        else:
            assert after[n] != 2


def test_affinity_key_is_the_conversation_start() -> None:
    system = {"role": "system", "content": "Be brief."}
    first = {"role": "user", "content": "Hello"}
    turn1 = affinity_key(chat_call([system, first]))
    turn3 = affinity_key(chat_call([system, first, {"role": "assistant", "content": "Hi"},
                                    {"role": "user", "content": "More?"}]))
    assert turn1 == turn3 and turn1 is not None
    assert affinity_key(chat_call([system, {"role": "user", "content": "Bye"}])) != turn1
    assert affinity_key(chat_call([system, first], model="other")) != turn1
    assert affinity_key(chat_call([])) is None


def test_affinity_key_of_completions_and_embeddings() -> None:
    def call(endpoint: str, body: dict) -> Call:
        return Call(operation="x", endpoint=endpoint, model="smol", body=body, raw=b"",
                    stream=False, request_id="r")

    long = "x" * 600
    assert affinity_key(call("/completions", {"prompt": long + "a"})) == affinity_key(
        call("/completions", {"prompt": long + "b"}))
    assert affinity_key(call("/completions", {"prompt": ["abc", "def"]})) == affinity_key(
        call("/completions", {"prompt": "abc"}))
    assert affinity_key(call("/completions", {"prompt": [1, 2, 3]})) is not None
    assert affinity_key(call("/completions", {"prompt": ""})) is None
    assert affinity_key(call("/embeddings", {"input": "abc"})) is None


async def test_pool_skips_unhealthy_and_full_workers_and_wakes_waiters() -> None:
    pool = WorkerPool("smol", 3, affinity=False)
    assert pool.pick(None, set()) is None  # nothing is healthy before the first check
    waiter = asyncio.ensure_future(pool.wait_for_change(5))
    await asyncio.sleep(0)
    pool.set_health(pool.workers[1], True, "ok")
    await asyncio.wait_for(waiter, 1)  # woken at once, not after the timeout
    pool.set_health(pool.workers[2], True, "ok")
    assert pool.pick(None, {1}).index == 2
    assert pool.pick(None, {1, 2}) is None
    pool.report_unreachable(pool.workers[2])
    assert not pool.workers[2].healthy and pool.workers[2].check_now.is_set()
    assert pool.pick(None, set()).index == 1
