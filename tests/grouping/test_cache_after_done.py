"""A streamed answer is cached once its [DONE] is in, even if the client hangs up right then.

The openai SDK closes the response as soon as it reads ``data: [DONE]``, often before the
gateway has seen the backend's stream end: the answer is complete by then, and must be kept.
"""

from __future__ import annotations

from grouping_support import Backend, chat_call, events_for, make_grouper, until


async def test_a_stream_whose_client_leaves_after_done_is_cached():
    grouper, backend = make_grouper(), Backend()
    await grouper.start()
    backend.release.set()
    first = chat_call(stream=True)
    leader = await grouper.run(first, first.principal, backend.produce)
    events = events_for(first)
    for event in events:  # everything up to [DONE]; the stream's end has not come yet
        backend.feed.put_nowait(event)
    got = b""
    while not got.endswith(b"data: [DONE]\n\n"):
        got += await leader.stream.__anext__()
    await leader.stream.aclose()  # the client hangs up at [DONE]
    await leader.aclose()
    await until(lambda: backend.cancelled)
    again = chat_call(stream=True)
    hit = await grouper.run(again, again.principal, backend.produce)
    assert hit.grouping == "hit" and backend.calls == 1
    await grouper.aclose()
