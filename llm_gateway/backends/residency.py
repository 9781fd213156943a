"""Which local models are loaded: on-demand loads, idle unloads, eviction by memory.

One `Residency` holds a `Slot` per spawned `local:` entry; each slot is in one state:

    unloaded --(a request; the plan fits)--> loading --(a worker is ready)--> loaded
    loading --(every worker failed, or none ready in time)--> unloaded (last_error kept)
    loaded --(idle for idle_unload_seconds | evicted for another model)--> unloading --> unloaded

- A request for a model not loaded waits (`serving`): at most ``max_waiting`` of them, each
  at most ``load_timeout_seconds``, then a 503 with ``Retry-After``. The first one plans the
  load (placement.py) and starts it; everyone else waits on that same load, so concurrent
  first requests start one. A failed load answers its waiters with a 503 and leaves the
  model unloaded: the next request tries again.
- A model is **idle** when no request is inside its backend call and none is on its workers
  (a stream counts until its end). Only idle models are evicted; pinned and resident ones
  never are, nor unloaded after a TTL.
- When a load does not fit and nothing can be evicted now, the request goes to the model's
  ``fallback`` (`NoRoom`, turned into a spill by the backend) or waits for room.
- Resident models start with the gateway as before, and are booked against the budget.

Memory (the budget, what each model holds, what the workers use): residency_memory.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, NoReturn

from llm_gateway.backends.placement import Blocked, Plan, booking_of, fit, plan
from llm_gateway.backends.residency_memory import MemoryBook, Slot
from llm_gateway.config.placement import PlacementConfig
from llm_gateway.errors import ServiceUnavailable

log = logging.getLogger(__name__)

UNLOADED, LOADING, LOADED, UNLOADING = "unloaded", "loading", "loaded", "unloading"
REPLAN_SECONDS = 1.0  # a request waiting for room plans again at least this often
READY_POLL_SECONDS = 0.1


class LoadFailed(Exception):
    pass


class NoRoom(Exception):
    """The model does not fit in memory now and nothing can be evicted (or never fits)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Residency(MemoryBook):
    def __init__(self, placement: PlacementConfig, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, nvml_lib: Any = None) -> None:
        super().__init__(placement, clock=clock, wall=wall, nvml_lib=nvml_lib)
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._watcher: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        """Read the models' sizes and the GPUs, and start watching idle models."""
        await self.open_memory()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def start_model(self, name: str) -> None:
        """At the gateway's start: a resident model's workers are spawned (not waited for)."""
        slot = self.slots[name]
        if not slot.resident:
            return
        need, budget = self.need(slot), self.budget()
        gpus: list[int | None] = [*need.fixed_gpus] or [None] * need.workers
        if fit(need, budget, self.booked(exclude=slot)) is None:
            log.warning("local %s: a resident model over the memory budget (%s); starting it "
                        "anyway", slot.name, self.describe_need(slot))
        slot.gpus, slot.booking = gpus, booking_of(need, gpus, budget)
        self._set_state(slot, LOADING)
        started = self._clock()
        await slot.model.start_workers(gpus)  # spawned now, as before residency
        slot.task = self._spawn(self._loaded(slot, started, resident=True))

    @contextlib.asynccontextmanager
    async def serving(self, name: str) -> AsyncIterator[None]:
        """Hold the model loaded around one backend call (waiting for its load if need be)."""
        slot = self.slots[name]
        slot.calls += 1
        try:
            if slot.state != LOADED:
                await self._wait_loaded(slot)
            self.note_use(slot)
            yield
        finally:
            slot.calls -= 1
            self._touch(slot)

    def released(self, name: str) -> None:
        """A request on the model's workers ended (the pool's release hook)."""
        self._touch(self.slots[name])

    def note_use(self, slot: Slot) -> None:
        """The model is used now (a busy model frees nothing: nobody to wake)."""
        slot.last_used = self._clock()
        slot.last_used_at = self._wall()

    async def aclose(self) -> None:
        self._closing = True
        tasks = [t for t in (self._watcher, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.close_memory()

    # -- waiting for a load ---------------------------------------------------------------
    async def _wait_loaded(self, slot: Slot) -> None:
        cfg = slot.cfg
        if slot.waiting >= cfg.max_waiting:
            self._step(slot)  # start the load all the same: the next request may find it
            raise ServiceUnavailable(
                f"The local model '{slot.name}' is loading and {slot.waiting} requests are "
                "already waiting for it; try again shortly.", code="model_loading",
                headers={"retry-after": self._retry_after(slot)})
        slot.waiting += 1
        try:
            async with asyncio.timeout(cfg.load_timeout_seconds):
                await self._ensure(slot)
        except TimeoutError:
            raise ServiceUnavailable(
                f"The local model '{slot.name}' is not loaded yet: waited "
                f"load_timeout_seconds ({cfg.load_timeout_seconds:g} s); try again shortly.",
                code="model_loading", headers={"retry-after": self._retry_after(slot)},
            ) from None
        finally:
            slot.waiting -= 1

    async def _ensure(self, slot: Slot) -> None:
        while slot.state != LOADED:
            if slot.state in (LOADING, UNLOADING) and slot.task is not None:
                loading = slot.state == LOADING
                try:
                    await asyncio.shield(slot.task)
                except LoadFailed as exc:
                    if loading:
                        raise ServiceUnavailable(
                            f"The local model '{slot.name}' failed to load: {exc}. A later "
                            "request will try again.", code="model_load_failed",
                            headers={"retry-after": self._retry_after(slot)}) from None
                continue
            blocked = self._step(slot)
            if blocked is None:
                continue
            if blocked.never or slot.cfg.fallback is not None:
                when = "" if blocked.never else " now"
                raise NoRoom(f"The local model '{slot.name}' does not fit in memory{when}: "
                             f"{blocked.reason}.", int(self._retry_after(slot)))
            await self._wait_change(REPLAN_SECONDS)

    def _step(self, slot: Slot) -> Blocked | None:
        """Start loading an unloaded model when it can be placed; why not, if it cannot."""
        if slot.state != UNLOADED:
            return None
        decision = plan(self.need(slot), self.budget(), self.candidates(slot))
        if isinstance(decision, Blocked):
            return decision
        self._begin_load(slot, decision)
        return None

    def _retry_after(self, slot: Slot) -> str:
        return str(max(1, round(slot.load_seconds or 5)))

    # -- loading and unloading ------------------------------------------------------------
    def _begin_load(self, slot: Slot, decision: Plan) -> None:
        slot.gpus, slot.booking, slot.last_error = decision.gpus, decision.booking, None
        waits = []
        for name, reason in decision.victims:
            victim = self.slots[name]
            self._begin_unload(victim, reason, for_model=slot.name)
            if victim.task is not None:
                waits.append(victim.task)
        self._set_state(slot, LOADING)
        slot.task = self._spawn(self._load(slot, waits))

    async def _load(self, slot: Slot, waits: list[asyncio.Task]) -> None:
        started = self._clock()
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        where = ", ".join(f"GPU {g}" for g in slot.gpus if g is not None) or "no GPU chosen"
        log.info("local %s: loading (%s; %s)", slot.name, self.describe_need(slot), where)
        try:
            await slot.model.start_workers(slot.gpus)
        except Exception as exc:
            await self._failed(slot, started, exc)
        await self._loaded(slot, started)

    async def _loaded(self, slot: Slot, started: float, *, resident: bool = False) -> None:
        """Wait for the first ready worker: the model is loaded (or its load failed)."""
        try:
            await self._until_ready(slot, resident)
        except Exception as exc:
            await self._failed(slot, started, exc)
        slot.load_seconds = self._clock() - started
        slot.loaded_at = self._wall()
        slot.loads += 1
        self._set_state(slot, LOADED)
        self._touch(slot)
        self.count_load(slot, "ok", slot.load_seconds)
        self.refresh()
        log.info("local %s: loaded in %.1f s (%s)", slot.name, slot.load_seconds,
                 self.describe_memory(slot))

    async def _failed(self, slot: Slot, started: float, exc: Exception) -> NoReturn:
        reason = str(exc) or type(exc).__name__
        log.error("local %s: load failed after %.1f s: %s", slot.name,
                  self._clock() - started, reason)
        with contextlib.suppress(Exception):
            await slot.model.stop_workers()
        slot.booking, slot.gpus, slot.last_error = None, [], reason
        self.count_load(slot, "failed", None)
        self._set_state(slot, UNLOADED)
        raise LoadFailed(reason) from None

    async def _until_ready(self, slot: Slot, resident: bool) -> None:
        # A resident model keeps its supervisor's restarts going for ever, as before.
        deadline = None if resident else self._clock() + slot.cfg.startup_timeout_seconds + 1
        while slot.model.workers_ready() == 0:
            if not resident and (failure := slot.model.start_failure()) is not None:
                raise LoadFailed(failure)
            if deadline is not None and self._clock() > deadline:
                raise LoadFailed(f"no worker ready after startup_timeout_seconds "
                                 f"({slot.cfg.startup_timeout_seconds:g} s)")
            await slot.model.wait_for_change(READY_POLL_SECONDS)

    def _begin_unload(self, slot: Slot, reason: str, *, for_model: str | None = None) -> None:
        self._set_state(slot, UNLOADING)
        slot.task = self._spawn(self._unload(slot, reason, for_model))

    async def _unload(self, slot: Slot, reason: str, for_model: str | None) -> None:
        idle = self._clock() - slot.last_used
        try:
            await slot.model.stop_workers()
        except Exception:
            log.exception("local %s: stopping its workers failed", slot.name)
        self.forget_memory(slot)
        slot.booking, slot.gpus, slot.loaded_at = None, [], None
        self._set_state(slot, UNLOADED)
        self.count_unload(slot, reason)
        if for_model is not None:
            log.info("local %s: evicted (%s) to load %s, idle %.1f s", slot.name, reason,
                     for_model, idle)
        else:
            log.info("local %s: unloaded (%s), idle %.1f s", slot.name, reason, idle)

    # -- idle models ----------------------------------------------------------------------
    async def _watch(self) -> None:
        """Unload models idle past their TTL; refresh what the workers use now and then."""
        next_refresh = 0.0
        while not self._closing:
            now = self._clock()
            due = now + self.REFRESH_SECONDS
            try:
                due = min(due, self._unload_idle(now))
                if now >= next_refresh:
                    next_refresh = now + self.REFRESH_SECONDS
                    self.refresh()
            except Exception:  # a bad reading must not end the TTLs of every model
                log.exception("residency: checking the local models failed")
            await self._wait_change(max(0.01, min(due, next_refresh) - now))

    def _unload_idle(self, now: float) -> float:
        """Begin unloading the models idle past their TTL; when the next TTL ends."""
        due = float("inf")
        for slot in self.slots.values():
            ttl = slot.cfg.idle_unload_seconds
            if ttl is None or slot.state != LOADED or slot.permanent or not slot.idle():
                continue
            expires = slot.last_used + ttl
            if expires <= now:
                self._begin_unload(slot, "idle")
            else:
                due = min(due, expires)
        return due

    # -- plumbing -------------------------------------------------------------------------
    def _touch(self, slot: Slot) -> None:
        """A request left the model: once it is idle, its memory may be taken and its TTL
        runs, so whoever waits is woken."""
        self.note_use(slot)
        if slot.idle():
            self._poke()

    def _set_state(self, slot: Slot, state: str) -> None:
        slot.state = state
        self.show_state(slot)
        self._poke()

    def _poke(self) -> None:
        """Wake whoever waits for a change: room freed, a model idle, a load over."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed load is answered to its waiters, not here
