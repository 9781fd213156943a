"""Coalescing at the Grouper: one backend call, each member its own Result, in its own shape.

The backend here is driven step by step by the test (released, fed chunk by chunk), so every
interleaving is exact: nothing depends on timing.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from llm_gateway.errors import UpstreamUnavailable
from llm_gateway.grouping.identity import identity

from grouping_support import (
    Backend,
    chat_call,
    content_of,
    events_for,
    make_grouper,
    read_all,
    same_but_id,
    until,
)


def members(grouper, call) -> int:
    shared = grouper.coalescer.find(identity(call, call.principal))
    return 0 if shared is None else shared.members


async def test_identical_calls_share_one_backend_call():
    grouper, backend = make_grouper(), Backend()
    calls = [chat_call() for _ in range(20)]
    tasks = [asyncio.create_task(grouper.run(c, c.principal, backend.produce)) for c in calls]
    await until(lambda: members(grouper, calls[0]) == 20)
    backend.release.set()
    results = await asyncio.gather(*tasks)
    assert backend.calls == 1
    assert len({r.body for r in results}) == 1
    assert sorted(r.grouping for r in results) == ["coalesced"] * 19 + ["miss"]
    for r in results:
        assert dict(r.headers)["x-lgw-cache"] == r.grouping
        assert r.status == 200 and r.backend == "fake"
    # Another client's cookie stays its own.
    assert [("set-cookie" in dict(r.headers)) for r in results].count(True) == 1


async def test_stream_fans_out_and_a_late_joiner_gets_the_whole_stream():
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    first = chat_call(stream=True)
    leader = await grouper.run(first, first.principal, backend.produce)
    events = events_for(first)
    for event in events[:3]:
        backend.feed.put_nowait(event)
    reader = leader.stream
    got = [await reader.__anext__(), await reader.__anext__()]
    shared = grouper.coalescer.find(identity(first, first.principal))
    # Alone, the leader pulls only what it reads: two events sent, one still upstream.
    assert shared.size == sum(map(len, events[:2])) and not shared.pumped
    late_call = chat_call(stream=True)
    late = await grouper.run(late_call, late_call.principal, backend.produce)
    assert late.grouping == "coalesced"
    for event in events[3:]:
        backend.feed.put_nowait(event)
    backend.feed.put_nowait(None)
    got += [block async for block in reader]
    late_got = await read_all(late)
    assert b"".join(got) == b"".join(events)  # the leader's client: the answer as it came
    assert same_but_id(late_got, b"".join(events))  # the others: under an id of their own
    assert backend.calls == 1


async def test_leader_leaving_does_not_cancel_the_others():
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    a, b = chat_call(stream=True), chat_call(stream=True)
    leader = await grouper.run(a, a.principal, backend.produce)
    other = await grouper.run(b, b.principal, backend.produce)
    events = backend.stream_all(a)
    await leader.stream.__anext__()
    await leader.stream.aclose()  # the leader's client went away
    await leader.aclose()
    assert same_but_id(await read_all(other), b"".join(events))
    assert not backend.cancelled


async def test_backend_cancelled_when_nobody_is_left():
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    a, b = chat_call(stream=True), chat_call(stream=True)
    results = [await grouper.run(c, c.principal, backend.produce) for c in (a, b)]
    backend.feed.put_nowait(b'data: {"choices": []}\n\n')
    for r in results:
        await r.stream.__anext__()
        await r.stream.aclose()
    await until(lambda: backend.cancelled)
    assert grouper.coalescer.find(identity(a, a.principal)) is None
    assert not grouper.coalescer.running


async def test_waiting_members_leaving_cancels_the_call_before_it_answers():
    grouper, backend = make_grouper(), Backend()
    call = chat_call()
    tasks = [asyncio.create_task(grouper.run(call, call.principal, backend.produce))
             for _ in range(3)]
    await until(lambda: members(grouper, call) == 3)
    shared = grouper.coalescer.find(identity(call, call.principal))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await until(lambda: shared.task.done())
    assert shared.task.cancelled()
    assert grouper.coalescer.find(identity(call, call.principal)) is None


async def test_an_error_reaches_every_member():
    grouper, backend = make_grouper(), Backend()
    backend.fail = UpstreamUnavailable("upstream down")
    calls = [chat_call(stream=i % 2 == 0) for i in range(6)]
    tasks = [asyncio.create_task(grouper.run(c, c.principal, backend.produce)) for c in calls]
    await until(lambda: members(grouper, calls[0]) == 6)
    backend.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert backend.calls == 1
    assert all(isinstance(o, UpstreamUnavailable) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 6  # each its own copy


async def test_a_stream_error_reaches_every_member_in_its_shape():
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    a, b = chat_call(stream=True), chat_call()
    leader = await grouper.run(a, a.principal, backend.produce)
    whole = asyncio.create_task(grouper.run(b, b.principal, backend.produce))
    await until(lambda: members(grouper, a) == 2)
    backend.feed.put_nowait(fr_chunk("Echo"))
    backend.feed.put_nowait(RuntimeError("connection reset"))
    streamed = await read_all(leader)
    assert b'"code":"stream_error"' in streamed
    result = await whole
    assert result.status == 502
    assert orjson.loads(result.body)["error"]["code"] == "stream_error"


async def test_non_stream_member_of_a_streaming_call_gets_a_whole_answer():
    grouper, backend = make_grouper(), Backend()
    a, b = chat_call(stream=True), chat_call()
    tasks = [asyncio.create_task(grouper.run(c, c.principal, backend.produce)) for c in (a, b)]
    await until(lambda: members(grouper, a) == 2)
    backend.release.set()
    events = backend.stream_all(a)
    streamed, whole = await asyncio.gather(read_all(await tasks[0]), tasks[1])
    assert streamed == b"".join(events)
    answer = orjson.loads(whole.body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == content_of(streamed)
    assert answer["usage"]["completion_tokens"] > 0
    assert whole.stream is None and whole.grouping == "coalesced"


async def test_stream_member_of_a_whole_call_gets_sse():
    grouper, backend = make_grouper(), Backend()
    a, b = chat_call(), chat_call(stream=True)
    tasks = [asyncio.create_task(grouper.run(c, c.principal, backend.produce)) for c in (a, b)]
    await until(lambda: members(grouper, a) == 2)
    backend.release.set()
    whole, streamed = await tasks[0], await tasks[1]
    text = await read_all(streamed)
    assert streamed.media_type == "text/event-stream"
    assert content_of(text) == orjson.loads(whole.body)["choices"][0]["message"]["content"]
    assert text.endswith(b"data: [DONE]\n\n") and b'"usage"' in text


async def test_a_reader_far_behind_is_cut_off_and_the_buffer_stays_bounded():
    grouper, backend = make_grouper(max_waiter_buffer_bytes=1000), Backend()
    backend.release.set()
    a, b = chat_call(stream=True), chat_call(stream=True)
    fast = await grouper.run(a, a.principal, backend.produce)
    slow = await grouper.run(b, b.principal, backend.produce)
    shared = grouper.coalescer.find(identity(a, a.principal))
    chunk = fr_chunk("x" * 200)
    for _ in range(20):
        backend.feed.put_nowait(chunk)
        assert await fast.stream.__anext__() == chunk
        assert sum(map(len, shared.blocks)) <= 1000 + len(chunk)
    # Past the bound the call takes no new members.
    assert grouper.coalescer.find(identity(a, a.principal)) is None
    backend.feed.put_nowait(None)
    assert b"".join([x async for x in fast.stream]) == b""
    cut = await read_all(slow)
    assert b'"code":"stream_lagged"' in cut


async def test_backend_status_errors_are_shared_not_cached():
    grouper, backend = make_grouper(), Backend()
    backend.status = 429
    backend.release.set()
    call = chat_call()
    first = await grouper.run(call, call.principal, backend.produce)
    second = await grouper.run(chat_call(), call.principal, backend.produce)
    assert first.status == second.status == 429
    assert backend.calls == 2 and second.grouping == "miss"


@pytest.mark.parametrize("leader_streams", [True, False])
async def test_a_complete_answer_is_cached_in_both_shapes(leader_streams):
    grouper, backend = make_grouper(), Backend()
    await grouper.start()
    backend.release.set()
    first = chat_call(stream=leader_streams)
    result = await grouper.run(first, first.principal, backend.produce)
    if leader_streams:
        backend.stream_all(first)
        await read_all(result)
    await until(lambda: grouper.cache is not None and len(grouper.cache) == 1)
    again = chat_call(stream=not leader_streams)
    hit = await grouper.run(again, again.principal, backend.produce)
    assert hit.grouping == "hit" and dict(hit.headers)["x-lgw-cache"] == "hit"
    assert backend.calls == 1
    assert (hit.stream is not None) == again.stream
    await grouper.aclose()


def fr_chunk(text: str) -> bytes:
    event = {"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


async def test_leader_cancelled_before_the_answer_hands_the_call_over():
    grouper, backend = make_grouper(), Backend()
    call = chat_call()
    leader = asyncio.create_task(grouper.run(call, call.principal, backend.produce))
    await until(lambda: backend.calls == 1)
    joiner = asyncio.create_task(grouper.run(chat_call(), call.principal, backend.produce))
    await until(lambda: members(grouper, call) == 2)
    leader.cancel()
    await until(lambda: backend.calls == 2)  # made again, for the one still waiting
    backend.release.set()
    result = await joiner
    assert result.status == 200 and result.grouping == "coalesced"
    assert leader.cancelled()


async def _leader_pulling():
    """A streaming leader alone, waiting inside its inline pull for the backend's first block."""
    grouper, backend = make_grouper(), Backend()
    backend.release.set()
    first = chat_call(stream=True)
    leader = await grouper.run(first, first.principal, backend.produce)
    shared = grouper.coalescer.find(identity(first, first.principal))
    pending = asyncio.ensure_future(leader.stream.__anext__())
    await until(lambda: shared.pulling is not None)  # alone, the leader pulls inline
    return grouper, backend, first, leader, pending


async def test_a_leader_whose_client_leaves_mid_pull_finishes_the_pull_for_the_others():
    grouper, backend, first, leader, pending = await _leader_pulling()
    other_call = chat_call(stream=True)
    other = await grouper.run(other_call, other_call.principal, backend.produce)
    # Its client goes: cancelling it now would cancel the pull under way, and the stream
    # with it, for the other member too; so the leader stops after this block instead.
    assert leader.on_gone() is False
    events = backend.stream_all(first)
    with pytest.raises(StopAsyncIteration):
        await pending
    assert same_but_id(await read_all(other), b"".join(events))
    assert backend.calls == 1 and not backend.cancelled


async def test_a_lone_leader_whose_client_leaves_is_cancelled_and_not_joinable():
    grouper, backend, first, leader, pending = await _leader_pulling()
    assert leader.on_gone() is True  # nobody else reads: cancel at once
    assert grouper.coalescer.find(identity(first, first.principal)) is None
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await until(lambda: backend.cancelled)
