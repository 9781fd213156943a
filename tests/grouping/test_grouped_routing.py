"""Where a grouped answer came from: every member of a shared call, the leader included, gets
the deployment, attempts and fallback of the call it shares (the ledger and the log line read
them from its own Result); a cached answer the deployment and fallback of the answer cached."""

from __future__ import annotations

import asyncio

from llm_gateway.call import Call, Result
from llm_gateway.config import parse_config
from llm_gateway.grouping.cache import MemoryCache
from llm_gateway.grouping.identity import identity
from llm_gateway.grouping.layer import Grouper

from grouping_support import Backend, chat_call, make_grouper, read_all, until

ROUTED = {"deployment": "east", "attempts": 2, "fallback": ("rate_limit", "gpt-4o-mini")}


def routed(backend: Backend):
    """The backend's produce, answering as routing would after a retry and a fallback."""
    async def produce(call: Call) -> Result:
        result = await backend.produce(call)
        result.deployment, result.attempts, result.fallback = (
            ROUTED["deployment"], ROUTED["attempts"], ROUTED["fallback"])
        return result
    return produce


def where(result: Result) -> dict:
    return {"deployment": result.deployment, "attempts": result.attempts,
            "fallback": result.fallback}


def members(grouper: Grouper, call: Call) -> int:
    shared = grouper.coalescer.find(identity(call, call.principal))
    return 0 if shared is None else shared.members


async def test_every_member_of_a_whole_answer_is_told_where_it_came_from():
    grouper, backend = make_grouper(), Backend()
    calls = [chat_call() for _ in range(3)]
    produce = routed(backend)
    tasks = [asyncio.create_task(grouper.run(c, c.principal, produce)) for c in calls]
    await until(lambda: members(grouper, calls[0]) == 3)
    backend.release.set()
    results = await asyncio.gather(*tasks)
    assert sorted(r.grouping for r in results) == ["coalesced", "coalesced", "miss"]
    assert [where(r) for r in results] == [ROUTED] * 3


async def test_members_of_a_stream_are_told_too_streamed_or_whole():
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    produce = routed(backend)
    first = chat_call(stream=True)
    leader = await grouper.run(first, first.principal, produce)
    streamed = await grouper.run(chat_call(stream=True), first.principal, produce)
    whole_call = chat_call(stream=True)
    whole_call.stream = False  # the same identity (the body asks for a stream), a whole answer
    whole = asyncio.create_task(grouper.run(whole_call, first.principal, produce))
    await until(lambda: members(grouper, first) == 3)
    backend.stream_all(first)
    await read_all(leader)
    await read_all(streamed)
    collected = await whole
    assert [r.grouping for r in (leader, streamed, collected)] == [
        "miss", "coalesced", "coalesced"]
    assert collected.stream is None and collected.status == 200
    assert [where(r) for r in (leader, streamed, collected)] == [ROUTED] * 3


async def test_a_cached_answer_names_where_it_came_from_but_no_attempts():
    config = parse_config({}, env={})
    grouper = Grouper(config, {}, cache=MemoryCache(ttl=60, max_bytes=1 << 20,
                                                    max_entry_bytes=1 << 16))
    backend = Backend()
    backend.release.set()
    produce = routed(backend)
    first = chat_call()
    miss = await grouper.run(first, first.principal, produce)  # kept at once (in memory)
    hit = await grouper.run(chat_call(), first.principal, produce)
    assert (miss.grouping, hit.grouping, backend.calls) == ("miss", "hit", 1)
    assert where(miss) == ROUTED
    # The cache keeps the answer with its backend, deployment and fallback; the attempts were
    # the miss's (the ledger counts a hit's own as 0: accounting/record.py own_attempts).
    assert where(hit) == {**ROUTED, "attempts": 1}
    assert hit.backend == "fake"
