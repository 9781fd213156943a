"""Issue 13, defect 6: one large SSE event cost quadratic time and unbounded memory.

`event_blocks` re-joined everything pending with each network read and searched it all again,
so a 20 MB event took 26 s (and the client then got `[DONE]` followed by an error event). Now
each read is searched once, plus the few bytes where a separator may have been cut, and an
event that grows past `server.max_sse_event_bytes` ends the stream with an OpenAI-shaped error
event, with no `[DONE]` after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import httpx
import orjson
import pytest

from llm_gateway.backends import sse
from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing import FakeUpstream

from gateway_support import gateway_config

SEPARATORS = [b"\n\n", b"\r\n\r\n", b"\r\r"]
READ = 64 * 1024  # a typical network read
CHAT = {"model": "gpt-4o-mini", "stream": True,
        "messages": [{"role": "user", "content": "one two three"}]}


async def _chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def blocks(parts: Iterable[bytes], **bound: int) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [block async for block in sse.event_blocks(_chunks(parts), **bound)]

    return asyncio.run(collect())


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("sep", SEPARATORS, ids=["lf", "crlf", "cr"])
def test_every_cut_of_a_stream_gives_back_whole_events(sep: bytes) -> None:
    events = [b"data: {\"n\": %d}" % i + sep for i in range(3)]
    stream = b"".join(events)
    cuts = [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    cuts += [[stream[i:i + 1] for i in range(len(stream))]]  # byte by byte
    cuts += [[stream[:i], stream[i:j], stream[j:]]
             for i in range(1, len(stream)) for j in range(i + 1, len(stream))]
    for parts in cuts:
        got = blocks(parts)
        assert b"".join(got) == stream, parts
        for block in got:
            assert block.endswith(sep), (parts, got)


def test_a_crlf_cut_between_reads_still_ends_the_event() -> None:
    assert blocks([b"data: a\r\n", b"\r\ndata: b"]) == [b"data: a\r\n\r\n", b"data: b"]
    assert blocks([b"data: a\r\n\r", b"\ndata: b"]) == [b"data: a\r\n\r\n", b"data: b"]
    assert blocks([b"data: a\r", b"\n", b"\r", b"\n"]) == [b"data: a\r\n\r\n"]


def test_whole_events_in_one_read_pass_as_they_are() -> None:
    chunk = b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
    got = blocks([chunk])
    assert len(got) == 1 and got[0] is chunk  # one search, no copy


def test_a_large_event_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 15 MB event in 64 KiB reads: the bytes searched stay about the bytes read (the old
    parser searched 2.5 GB here)."""
    searched = 0
    search = sse._last_boundary

    def counting(data: bytes) -> int:
        nonlocal searched
        searched += len(data)
        return search(data)

    monkeypatch.setattr(sse, "_last_boundary", counting)
    event = b"data: " + b"x" * (15 * 1000 * 1000) + b"\n\n"
    stream = event + b"data: [DONE]\n\n"
    got = blocks(pieces(stream, READ))
    assert b"".join(got) == stream
    assert got[0].startswith(event)
    assert searched < len(stream) + 8 * (len(stream) // READ + 1)


def test_an_event_past_the_bound_stops_the_stream_early() -> None:
    read = 0

    def counted(parts: list[bytes]) -> Iterable[bytes]:
        nonlocal read
        for part in parts:
            read += len(part)
            yield part

    stream = b"data: small\n\n" + b"data: " + b"y" * 100_000 + b"\n\n"
    with pytest.raises(sse.EventTooLarge) as raised:
        blocks(counted(pieces(stream, 1000)), max_event_bytes=10_000)
    assert raised.value.limit == 10_000
    assert read <= 12_000  # it stopped reading soon after the bound, not at the event's end
    # An event of exactly the bound passes.
    exact = b"data: " + b"z" * (10_000 - 8) + b"\n\n"
    assert blocks(pieces(exact, 999), max_event_bytes=10_000) == [exact]


# --- through the gateway ---------------------------------------------------------------------


def stream_events(base: str) -> list[bytes]:
    with httpx.stream("POST", f"{base}/chat/completions", json=CHAT, timeout=30) as r:
        assert r.status_code == 200
        body = r.read()
    return [e for e in body.split(b"\n\n") if e]


def assert_event_too_large(events: list[bytes]) -> None:
    assert not any(e.startswith(b"data: [DONE]") for e in events), events[-3:]
    last = events[-1]
    assert last.startswith(b"data: "), last[:200]
    error = orjson.loads(last[6:])["error"]
    assert error["code"] == "upstream_event_too_large"
    assert set(error) == {"message", "type", "param", "code"}
    assert "larger than" in error["message"]


def test_a_20_mb_event_gets_an_error_event_and_no_done(fake: FakeUpstream, make_gateway) -> None:
    gateway = make_gateway()  # the default bound (16 MiB)
    fake.huge_event_next(20 * 1000 * 1000)
    events = stream_events(gateway.url)
    assert_event_too_large(events)
    assert sum(len(e) for e in events) < 1000  # the huge event was not relayed in part


def test_the_bound_is_configurable_and_an_event_under_it_passes_whole(
        fake: FakeUpstream, make_gateway) -> None:
    config = gateway_config(fake.url)
    config["server"]["max_sse_event_bytes"] = 1024 * 1024
    gateway = make_gateway(config)
    fake.huge_event_next(900_000)
    events = stream_events(gateway.url)
    assert len(events[0]) == 900_000 - 2  # the padding event, whole (its blank line split off)
    assert events[-1] == b"data: [DONE]"
    fake.huge_event_next(2 * 1024 * 1024)
    assert_event_too_large(stream_events(gateway.url))


def test_a_bad_bound_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.max_sse_event_bytes: must be > 0"):
        parse_config(gateway_config("http://127.0.0.1:1/v1", server={"max_sse_event_bytes": 0}))
