"""The grouping layer between limits and routing: coalescing and the response cache.

For each call, `Policy` decides (cheaply) whether grouping applies; a call it does not apply
to goes straight to `produce` (routing and the backend), untouched. Otherwise, by identity
(`identity.identity`):

1. an identical call in flight and still joinable: join it (``coalesced``);
2. the cache holds the answer: replay it (``hit``);
3. otherwise lead a shared call (``miss``): `produce` runs in a task of its own, registered
   so that identical requests arriving meanwhile join it; a complete status-200 answer is
   then written to the cache.

Every answer grouping touched carries ``x-lgw-cache: hit|miss|coalesced`` and the same value
in `Result.grouping` (the accountant records it, and the tokens a non-``miss`` one saved).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from llm_gateway.call import Call, Result
from llm_gateway.config import Config
from llm_gateway.config.errors import ConfigError
from llm_gateway.grouping.cache import Cache, CachedAnswer, MemoryCache, RedisCache
from llm_gateway.grouping.coalescer import Coalescer
from llm_gateway.grouping.fanout import SharedCall
from llm_gateway.grouping.identity import identity
from llm_gateway.grouping.policy import Plan, Policy, wants_cache
from llm_gateway.grouping.shapes import CACHE_HEADER, complete_stream, from_cache
from llm_gateway.principal import Principal

Produce = Callable[[Call], Awaitable[Result]]


class Grouper:
    def __init__(self, config: Config, env: Mapping[str, str], *,
                 metrics: Any = None, cache: Cache | None = None) -> None:
        self.config = config
        grouping = config.grouping
        self.policy = Policy(grouping)
        self.coalescer = Coalescer(grouping.max_waiter_buffer_bytes)
        self.cache: Cache | None = cache  # tests may bring their own (an injectable clock)
        # The in-process cache is read without a coroutine (see MemoryCache).
        self._memory = cache if isinstance(cache, MemoryCache) else None
        self._wants_cache = cache is None and wants_cache(grouping)
        if (self._wants_cache and grouping.cache.backend == "redis"
                and not config.storage.redis_url):
            raise ConfigError(["grouping.cache.backend: redis needs storage.redis_url"])
        # llm_gateway_grouped_requests{kind}: children resolved once (labels() locks each time).
        self._count = None
        if metrics is not None:
            self._count = {"coalesced": metrics.grouped.labels("coalesced"),
                           "hit": metrics.grouped.labels("cache_hit")}

    async def start(self) -> None:
        if not self._wants_cache:
            return
        c = self.config.grouping.cache
        if c.backend == "redis":
            url = self.config.storage.redis_url
            assert url is not None
            self.cache = RedisCache(url, ttl=c.ttl_seconds, max_entry_bytes=c.max_entry_bytes)
        else:
            self.cache = self._memory = MemoryCache(
                ttl=c.ttl_seconds, max_bytes=c.max_bytes, max_entry_bytes=c.max_entry_bytes)

    async def run(self, call: Call, principal: Principal, produce: Produce) -> Result:
        """The call's Result: from `produce` (the backend), a shared call, or the cache.
        Sets `Result.grouping`."""
        plan = self.policy.plan(call, principal)
        if plan is None:
            return await produce(call)
        key = identity(call, principal)
        coalescer = self.coalescer
        if plan.coalesce and (shared := coalescer.find(key)) is not None:
            return await self._join(shared, call)
        if plan.cache_read and self.cache is not None:
            memory = self._memory
            cached = memory.lookup(key) if memory is not None else await self.cache.get(key)
            if cached is not None:
                self._counted("hit")
                return from_cache(cached, call.stream, "hit")
            # Another identical request may have started while a remote cache answered.
            if memory is None and plan.coalesce and (shared := coalescer.find(key)) is not None:
                return await self._join(shared, call)
        return await self._lead(key, plan, call, produce)

    async def _join(self, shared: SharedCall, call: Call) -> Result:
        self._counted("coalesced")
        return await shared.join(call)

    async def _lead(self, key: str, plan: Plan, call: Call, produce: Produce) -> Result:
        write = plan.cache_write and self.cache is not None
        if not plan.coalesce and not write:
            result = await produce(call)  # only a cache read was possible, and it missed
            result.grouping = "miss"
            result.headers.append((CACHE_HEADER, "miss"))
            return result
        on_done = self._store if write else None
        shared = self.coalescer.open(key, register=plan.coalesce, on_done=on_done)
        return await shared.lead(call, produce)

    def _store(self, shared: SharedCall) -> None:
        """Keep a complete status-200 answer (a whole stream) in the cache."""
        result, cache = shared.result, self.cache
        if result is None or result.status != 200 or cache is None:
            return
        where = result.deployment, result.fallback  # told again with each replay
        if result.stream is None:
            answer = CachedAnswer(result.body, result.backend, False, *where)
        else:
            # Only a stream the replay buffer kept whole, complete, and not too big.
            blocks = shared.blocks
            if shared.first != 0 or shared.size > cache.max_entry_bytes \
                    or not complete_stream(blocks):
                return
            answer = CachedAnswer(b"".join(blocks), result.backend, True, *where)
        cache.put_soon(shared.key, answer)

    def _counted(self, kind: str) -> None:
        if self._count is not None:
            self._count[kind].inc()

    async def aclose(self) -> None:
        await self.coalescer.aclose()
        if self.cache is not None:
            await self.cache.aclose()
