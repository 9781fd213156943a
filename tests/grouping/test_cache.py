"""The response cache: TTL, size bound, per-team isolation, and Redis shared by two Groupers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from llm_gateway.config import parse_config
from llm_gateway.config.errors import ConfigError
from llm_gateway.grouping.cache import CachedAnswer, MemoryCache, RedisCache
from llm_gateway.grouping.layer import Grouper
from llm_gateway.principal import Principal

from grouping_support import Backend, chat_call, read_all
from services import redis_url


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = MemoryCache(ttl=60, max_bytes=10_000, max_entry_bytes=1000, clock=clock)
    await cache.put("k", CachedAnswer(b"{}", "b"))
    clock.now += 59.9
    assert await cache.get("k") == CachedAnswer(b"{}", "b")
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0 and cache.size == 0


async def test_least_recently_used_entries_go_first_when_over_the_byte_bound():
    cache = MemoryCache(ttl=60, max_bytes=3 * 1300, max_entry_bytes=2000)
    for key in "abc":
        await cache.put(key, CachedAnswer(b"x" * 1000, "b"))
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.put("d", CachedAnswer(b"x" * 1000, "b"))
    assert await cache.get("b") is None
    assert all([await cache.get(k) for k in "acd"])
    assert cache.size <= cache.max_bytes
    await cache.put("big", CachedAnswer(b"x" * 2001, "b"))  # over max_entry_bytes: skipped
    assert await cache.get("big") is None and len(cache) == 3


async def test_a_cached_answer_does_not_cross_teams():
    config = parse_config({}, env={})
    backend = Backend()
    backend.release.set()
    clock = Clock()
    grouper = Grouper(config, {}, cache=MemoryCache(ttl=60, max_bytes=1 << 20,
                                                    max_entry_bytes=1 << 16, clock=clock))
    a1, a2, b = Principal("k1", team="a"), Principal("k2", team="a"), Principal("k3", team="b")
    results = []
    for principal in (a1, a2, b, b):
        call = chat_call(principal=principal)
        results.append(await grouper.run(call, principal, backend.produce))
    assert [r.grouping for r in results] == ["miss", "hit", "miss", "hit"]
    assert backend.calls == 2
    clock.now += 61  # TTL over: a fresh call
    call = chat_call(principal=a1)
    assert (await grouper.run(call, a1, backend.produce)).grouping == "miss"
    # Teams that opted in share one cache.
    s1, s2 = Principal("k1", team="a", shared_cache=True), Principal("k3", team="b",
                                                                      shared_cache=True)
    first = await grouper.run(chat_call(principal=s1), s1, backend.produce)
    second = await grouper.run(chat_call(principal=s2), s2, backend.produce)
    assert (first.grouping, second.grouping) == ("miss", "hit")


async def test_redis_cache_is_shared_by_two_groupers():
    url = redis_url()
    config = parse_config({"storage": {"redis_url": url},
                           "grouping": {"cache": {"backend": "redis", "ttl_seconds": 30}}},
                          env={})
    one, two = Grouper(config, {}), Grouper(config, {})
    await one.start()
    await two.start()
    try:
        backend = Backend()
        backend.release.set()
        marker = uuid.uuid4().hex  # a body no earlier run has cached
        first = chat_call(stream=True, metadata={"run": marker})
        led = await one.run(first, first.principal, backend.produce)
        backend.stream_all(first)
        streamed = await read_all(led)
        while one.coalescer.running or one.cache.writes:  # the write follows the stream's end
            await asyncio.sleep(0.01)
        again = chat_call(metadata={"run": marker})
        hit = await two.run(again, again.principal, backend.produce)
        assert hit.grouping == "hit" and backend.calls == 1
        assert hit.backend == "fake" and b"Echo:" in hit.body and b"Echo:" in streamed
    finally:
        await one.aclose()
        await two.aclose()


async def test_an_unreachable_redis_is_a_miss_not_an_error():
    cache = RedisCache("redis://127.0.0.1:1/0", ttl=10, max_entry_bytes=1000, timeout=0.2)
    try:
        assert await cache.get("k") is None
        await cache.put("k", CachedAnswer(b"{}", "b"))  # logged, not raised
    finally:
        await cache.aclose()


def test_redis_backend_needs_a_redis_url():
    with pytest.raises(ConfigError, match=r"storage\.redis_url"):
        parse_config({"grouping": {"cache": {"backend": "redis"}}}, env={})
