"""Rate limits and budgets shared by every replica, in Redis, one Lua script per decision.

A script runs atomically in Redis, so N replicas admitting at once see each other's calls:
the limit holds once, not N times. Time comes from Redis (`TIME`), not from each replica, so
replicas with skewed clocks still agree. Admitting is one round trip (`ADMIT`: budgets checked,
rate limits checked, then all taken, or nothing); settling is one more, off the request path.

Keys (prefix `lgw:`): `rl:<bucket>` a rate limit's TAT (windows.py), expiring once idle;
`bu:<scope>:<period>` a budget's hash (st/sc spent tokens/cost, rt/rc reserved, r:<id> each
open reservation's "tokens cost"), expiring a day after its period; `bu:...:z` the open
reservations by expiry time. A reservation whose call never settles (its replica died) is
given back by the next admission after RESERVATION_TTL. A budget hash is seeded once per
period from the ledger with a SET-if-absent script, by whichever replica needs it first.
Redis Cluster is not supported (a call's keys would span slots).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from llm_gateway.limits.budgets import Charge, SingleFlight, spent_or_zero
from llm_gateway.limits.store import Decision, StoreUnavailable, Ticket
from llm_gateway.limits.windows import WINDOW, Bucket, judge

log = logging.getLogger(__name__)

PREFIX = "lgw:"
RESERVATION_TTL = 900.0  # seconds a reservation may stay open: longer than any call
FAILED_SEED_TTL = 30  # a budget seeded with 0 because the ledger did not answer lives this long
RETRY_SECONDS = 1.0  # after Redis failed, go straight to the fallback this long
TIMEOUT = 0.5  # seconds for a connect or a command: a slow Redis must not stall requests
MAX_CONNECTIONS = 64  # per replica; a script takes well under a millisecond

# Shared by the scripts: reading and storing a TAT, releasing a reservation, Redis's clock.
_LUA_PRELUDE = """
local function tat_of(key, now)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  return tat
end
local function store_tat(key, tat, now)
  if tat > now then
    redis.call('SET', key, string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
local function release(h, id)
  local amount = redis.call('HGET', h, 'r:' .. id)
  if amount then
    local sep = string.find(amount, ' ')
    redis.call('HINCRBY', h, 'rt', -tonumber(string.sub(amount, 1, sep - 1)))
    redis.call('HINCRBYFLOAT', h, 'rc', -tonumber(string.sub(amount, sep + 1)))
    redis.call('HDEL', h, 'r:' .. id)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: nw rate-limit keys, then (hash, zset) per budget.
# ARGV: nw, window, rid, ttl, tokens, cost, (limit, cost) per rate limit,
#       (token limit or '', cost limit or '', expire-at or 0) per budget.
ADMIT = _LUA_PRELUDE + """
local nw, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rid, ttl, rtok, rcost = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local nb = (#KEYS - nw) / 2
local b0 = 6 + 2 * nw
local out = {'ok', string.format('%.6f', now)}
for i = 1, nb do
  local h, z = KEYS[nw + 2 * i - 1], KEYS[nw + 2 * i]
  if redis.call('EXISTS', h) == 0 then return {'seed', tostring(i)} end
  local stale = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(stale) do release(h, id) end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', z, '-inf', now) end
  local v = redis.call('HMGET', h, 'st', 'sc', 'rt', 'rc')
  local st, sc = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local used_t, used_c = st + (tonumber(v[3]) or 0), sc + (tonumber(v[4]) or 0)
  local tl, cl = ARGV[b0 + 3 * i - 2], ARGV[b0 + 3 * i - 1]
  if (tl ~= '' and used_t >= tonumber(tl)) or (cl ~= '' and used_c >= tonumber(cl)) then
    return {'budget', tostring(i)}
  end
  out[#out + 1] = v[1] or '0'
  out[#out + 1] = v[2] or '0'
end
local tats, news, refused = {}, {}, false
for i = 1, nw do
  local step = window / tonumber(ARGV[5 + 2 * i])
  tats[i] = tat_of(KEYS[i], now)
  news[i] = tats[i] + tonumber(ARGV[6 + 2 * i]) * step
  if news[i] - window - now > 1e-9 then refused = true end
end
for i = 1, nw do out[#out + 1] = string.format('%.6f', tats[i]) end
if refused then out[1] = 'rate'; return out end
for i = 1, nw do store_tat(KEYS[i], news[i], now) end
for i = 1, nb do
  local h, z = KEYS[nw + 2 * i - 1], KEYS[nw + 2 * i]
  redis.call('HSET', h, 'r:' .. rid, rtok .. ' ' .. rcost)
  redis.call('HINCRBY', h, 'rt', rtok)
  redis.call('HINCRBYFLOAT', h, 'rc', rcost)
  redis.call('ZADD', z, now + ttl, rid)
  local expire_at = tonumber(ARGV[b0 + 3 * i])
  if expire_at > 0 then redis.call('EXPIREAT', z, expire_at) end
end
return out
"""

# KEYS: nw rate-limit keys, then (hash, zset) per budget.
# ARGV: nw, window, rid, delta per rate limit (with its limit), (tokens, cost) used per budget.
SETTLE = _LUA_PRELUDE + """
local nw, window, rid = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = 1, nw do
  local step = window / tonumber(ARGV[2 + 2 * i])
  local delta = tonumber(ARGV[3 + 2 * i])
  local raw = tonumber(redis.call('GET', KEYS[i]) or now)
  if delta >= 0 then
    store_tat(KEYS[i], math.max(raw, now) + delta * step, now)
  else
    store_tat(KEYS[i], math.max(raw + delta * step, now), now)
  end
end
local out = {}
local b0 = 3 + 2 * nw
for i = 1, (#KEYS - nw) / 2 do
  local h, z = KEYS[nw + 2 * i - 1], KEYS[nw + 2 * i]
  release(h, rid)
  redis.call('ZREM', z, rid)
  if redis.call('EXISTS', h) == 1 then
    redis.call('HINCRBY', h, 'st', ARGV[b0 + 2 * i - 1])
    redis.call('HINCRBYFLOAT', h, 'sc', ARGV[b0 + 2 * i])
    local v = redis.call('HMGET', h, 'st', 'sc')
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
"""

# KEYS: the budget hash. ARGV: spent tokens, spent cost, expire-at (0: never), or a TTL.
SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[1], 'sc', ARGV[2], 'rt', 0, 'rc', 0)
if tonumber(ARGV[3]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


def _budget_keys(c: Charge) -> tuple[str, str]:
    h = f"{PREFIX}bu:{c.key}"
    return h, h + ":z"


def _expire_at(c: Charge) -> int:
    # A day past the period's end: late settles of the period's last calls still land.
    return 0 if c.end is None else int(c.end) + 86400


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


class RedisStore:
    def __init__(self, url: str, ledger: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            from redis import asyncio as aioredis
        except ImportError:
            raise RuntimeError("storage.redis_url is set, but the redis package is not "
                               "installed: pip install 'llm-gateway[redis]'") from None
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        # A bounded pool that makes a call wait (up to TIMEOUT) for a connection: a burst of
        # thousands of requests must not open thousands of connections.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT, decode_responses=True,
            socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self.client = aioredis.Redis.from_pool(pool)
        self.ledger = ledger
        self.clock = clock
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)
        self._seed = self.client.register_script(SEED)
        self._seeding = SingleFlight()
        self._down_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(self, buckets: list[Bucket], ticket: Ticket) -> Decision:
        if self.clock() < self._down_until:
            raise StoreUnavailable("redis was unreachable moments ago")
        keys = [f"{PREFIX}rl:{b.id}" for b in buckets]
        args: list[Any] = [len(buckets), WINDOW, ticket.rid, RESERVATION_TTL, ticket.tokens,
                           repr(ticket.cost)]
        for b in buckets:
            args += [b.limit, b.cost]
        for c in ticket.charges:
            keys.extend(_budget_keys(c))
            args += [_num(c.tokens), _num(c.cost), _expire_at(c)]
        for _ in range(len(ticket.charges) + 2):  # at most one seed per budget in between
            out = await self._call(self._admit, keys, args)
            if out[0] != "seed":
                return self._decision(out, buckets, ticket.charges)
            c = ticket.charges[int(out[1]) - 1]
            await self._seeding.run(c.key, partial(self._seed_budget, c))
        raise StoreUnavailable("budget hash vanished while seeding it")

    def _decision(self, out: list[str], buckets: list[Bucket],
                  charges: list[Charge]) -> Decision:
        if out[0] == "budget":
            return Decision(None, charges[int(out[1]) - 1])
        now = float(out[1])
        nb = len(charges)
        spent = [(int(float(out[2 + 2 * i])), float(out[3 + 2 * i])) for i in range(nb)]
        tats = [float(v) for v in out[2 + 2 * nb:]]
        verdict = None
        if buckets:
            verdict, _ = judge(buckets, tats, now)
            if out[0] == "ok" and not verdict.admitted:  # float slack: Redis decided
                verdict.admitted, verdict.refused = True, None
        return Decision(verdict, None, list(spent))

    async def _seed_budget(self, c: Charge) -> None:
        spent = await spent_or_zero(self.ledger, c)
        ttl = 0 if spent is not None else FAILED_SEED_TTL  # counted from 0: ask again soon
        tokens, cost = spent or (0, 0.0)
        await self._call(self._seed, [_budget_keys(c)[0]],
                         [tokens, repr(cost), _expire_at(c), ttl])

    def settle(self, ticket: Ticket, tokens: int, cost: float,
               spent: Callable[[Ticket, list[tuple[int, float] | None]], None]) -> None:
        """Never blocks: the round trip runs in the background (awaited at shutdown)."""
        task = asyncio.get_running_loop().create_task(
            self._settle_now(ticket, tokens, cost, spent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_now(self, ticket: Ticket, tokens: int, cost: float,
                          spent: Callable[[Ticket, list[tuple[int, float] | None]], None]) -> None:
        keys = [f"{PREFIX}rl:{b.id}" for b in ticket.buckets]
        args: list[Any] = [len(ticket.buckets), WINDOW, ticket.rid]
        for b in ticket.buckets:
            args += [b.limit, tokens - b.cost]
        for c in ticket.charges:
            keys.extend(_budget_keys(c))
            args += [tokens, repr(cost)]
        try:
            out = await self._call(self._settle, keys, args)
        except StoreUnavailable as exc:
            # The reservation expires by itself (RESERVATION_TTL); the ledger has the usage.
            log.debug("limits: could not settle %s in Redis: %s", ticket.rid, exc)
            return
        if ticket.charges:
            spent(ticket, [(int(float(out[i])), float(out[i + 1])) if out[i] != "" else None
                           for i in range(0, len(out), 2)])

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except self._errors as exc:
            self._down_until = self.clock() + RETRY_SECONDS
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except self._errors:
            return False

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.client.aclose()
