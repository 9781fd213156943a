"""Re-blocking a byte stream on SSE event boundaries."""

from __future__ import annotations

from llm_gateway.backends.sse import event_blocks


async def collect(chunks: list[bytes]) -> list[bytes]:
    async def source():
        for chunk in chunks:
            yield chunk

    return [block async for block in event_blocks(source())]


async def test_events_cut_anywhere_come_out_whole():
    stream = b"data: {\"a\": 1}\n\ndata: {\"b\": 2}\n\nevent: x\ndata: 3\n\ndata: [DONE]\n\n"
    for size in (1, 2, 5, 7, 13, len(stream)):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        blocks = await collect(chunks)
        assert b"".join(blocks) == stream
        assert all(block.endswith(b"\n\n") for block in blocks)


async def test_several_events_in_one_read_stay_one_block():
    stream = b"data: 1\n\ndata: 2\n\n"
    assert await collect([stream]) == [stream]


async def test_crlf_framing_and_trailing_partial():
    assert await collect([b"data: 1\r\n\r\ndata: 2\r", b"\n\r\n"]) == [
        b"data: 1\r\n\r\n", b"data: 2\r\n\r\n"]
    assert await collect([b"data: 1\n\ndata: partial"]) == [b"data: 1\n\n", b"data: partial"]
