"""The response cache: complete status-200 answers by identity, with a TTL and a size bound.

Two backends with one interface: `MemoryCache` (this process; an LRU bounded by bytes) and
`RedisCache` (``storage.redis_url``; shared by every replica). What is stored is a complete
answer in the shape it was made (a JSON body, or a whole SSE stream); a request of the other
shape gets it converted (`replay`).

The cache is an optimisation, never a dependency: a Redis that fails or is slow is logged and
treated as a miss (or a skipped write), and the request goes to the backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import orjson

log = logging.getLogger(__name__)

ENTRY_OVERHEAD = 200  # bytes a memory entry costs beyond its key and body (objects, links)
REDIS_PREFIX = "lgw:cache:"
REDIS_TIMEOUT = 0.25  # seconds; a cache slower than this is no use to anyone


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    # The answer as it was made: a whole JSON body, or (events=True) a complete SSE stream.
    # Kept in its own shape and converted only when a request of the other shape reads it:
    # most cached answers are never read, so converting each one on the way in would be
    # wasted work on every miss.
    body: bytes
    backend: str  # the backend that made it, for x-lgw-backend and the ledger
    events: bool = False
    # Where routing got it, as its own answer said (x-lgw-deployment, x-lgw-fallback, the
    # ledger): the route's deployment, and (reason, model) when it came from a fallback.
    deployment: str | None = None
    fallback: tuple[str, str] | None = None


class Cache(Protocol):
    max_entry_bytes: int

    async def get(self, key: str) -> CachedAnswer | None: ...
    async def put(self, key: str, answer: CachedAnswer) -> None: ...
    def put_soon(self, key: str, answer: CachedAnswer) -> None:
        """Store without making the caller wait (and never fail it)."""
    async def aclose(self) -> None: ...


class MemoryCache:
    """LRU by bytes with a TTL; `clock` (monotonic seconds) is injectable for tests.

    Nothing here waits, so the grouping layer calls `lookup` and `put_soon` directly: a
    coroutine per request is measurable on the path of every deterministic request.
    """

    def __init__(self, *, ttl: float, max_bytes: int, max_entry_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        self.size = 0
        # key -> (body, backend, events, expires, cost, deployment, fallback): a tuple of plain
        # values, which the garbage collector stops tracking, so a full cache adds nothing to
        # its passes (a CachedAnswer per entry made them measurably slower on a busy gateway).
        self._entries: OrderedDict[str, tuple[bytes, str, bool, float, int, str | None,
                                              tuple[str, str] | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedAnswer | None:
        return self.lookup(key)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        self.put_soon(key, answer)

    def lookup(self, key: str) -> CachedAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if self.clock() >= found[3]:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return CachedAnswer(found[0], found[1], found[2], found[5], found[6])

    def put_soon(self, key: str, answer: CachedAnswer) -> None:
        cost = len(answer.body) + len(key) + ENTRY_OVERHEAD
        if len(answer.body) > self.max_entry_bytes or cost > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (answer.body, answer.backend, answer.events,
                              self.clock() + self.ttl, cost, answer.deployment, answer.fallback)
        self.size += cost
        # Least recently used first. Expired entries are not hunted down: they are dropped
        # when met, and being least recently used, they are the first to go here too.
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        self.size -= self._entries.pop(key)[4]

    async def aclose(self) -> None:
        self._entries.clear()
        self.size = 0


class RedisCache:
    """Answers in Redis under ``lgw:cache:<identity>``, expiring after the TTL (``PX``).

    The size bound is Redis's own: give it a ``maxmemory`` and an LRU ``maxmemory-policy``
    (``allkeys-lru``, or ``volatile-lru`` when it holds other data too: every cache key has a
    TTL). ``max_entry_bytes`` still applies per answer.
    """

    def __init__(self, url: str, *, ttl: float, max_entry_bytes: int,
                 timeout: float = REDIS_TIMEOUT) -> None:
        self.writes: set[asyncio.Task[None]] = set()  # put_soon's writes under way
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - depends on the install
            raise RuntimeError("grouping.cache.backend redis needs the `redis` extra: "
                               "pip install 'llm-gateway[redis]'") from None
        self.ttl_ms = max(1, int(ttl * 1000))
        self.max_entry_bytes = max_entry_bytes
        self.timeout = timeout
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            async with asyncio.timeout(self.timeout):
                # bytes: the client does not decode responses
                raw = cast(bytes | None, await self.client.get(REDIS_PREFIX + key))
        except Exception as exc:  # any failure is a miss: the backend answers instead
            log.warning("response cache: redis GET failed: %r", exc)
            return None
        return None if raw is None else _decode(raw)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if len(answer.body) > self.max_entry_bytes:
            return
        value = _encode(answer)
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.set(REDIS_PREFIX + key, value, px=self.ttl_ms)
        except Exception as exc:
            log.warning("response cache: redis SET failed: %r", exc)

    def put_soon(self, key: str, answer: CachedAnswer) -> None:
        # Over the network: not on the answer's way to the client.
        task = asyncio.get_running_loop().create_task(self.put(key, answer))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def aclose(self) -> None:
        if self.writes:
            await asyncio.wait(self.writes, timeout=2)
        await self.client.aclose()


# A Redis value is a head line, then the body: `json <backend>` or `sse <backend>`, or, for an
# answer routing placed, `json+ {"backend", "deployment", "fallback"}` (`sse+` alike). Entries
# written before the `+` heads (a backend only) still read; `+` is only written when there is
# something more to say, so replicas still on the old heads read most entries right too.
_ROUTED = b"+"


def _encode(answer: CachedAnswer) -> bytes:
    shape = b"sse" if answer.events else b"json"
    if answer.deployment is None and answer.fallback is None:
        return shape + b" " + answer.backend.encode() + b"\n" + answer.body
    where = orjson.dumps({"backend": answer.backend, "deployment": answer.deployment,
                          "fallback": answer.fallback})
    return shape + _ROUTED + b" " + where + b"\n" + answer.body


def _decode(raw: bytes) -> CachedAnswer | None:
    head, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    shape, _, rest = head.partition(b" ")
    events = shape.removesuffix(_ROUTED) == b"sse"
    if not shape.endswith(_ROUTED):
        return CachedAnswer(body, rest.decode(), events)
    try:
        where = orjson.loads(rest)
        fallback = where["fallback"]
        return CachedAnswer(body, where["backend"], events, where["deployment"],
                            None if fallback is None else (fallback[0], fallback[1]))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None  # unreadable: a miss
