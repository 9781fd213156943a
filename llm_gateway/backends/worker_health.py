"""Health-checking workers: the ``GET /health`` probe, and the loop that watches a worker the
gateway did not spawn (given as ``urls``, or found by ``discovery``)."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from llm_gateway.backends.pool import Worker, WorkerPool
from llm_gateway.config import LocalConfig

HEALTH_TIMEOUT_SECONDS = 2.0
_HEALTH_TIMEOUT = httpx.Timeout(HEALTH_TIMEOUT_SECONDS).as_dict()
LOADING_POLL_SECONDS = 0.1  # while a worker loads: it is ready as soon as it says so
MISSES_BEFORE_DOWN = 2  # unanswered health checks before a live worker stops getting requests


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class HealthChecks:
    """The Supervisor's health checks (a mixin: the Supervisor holds the state)."""

    cfg: LocalConfig
    pool: WorkerPool
    _http: httpx.AsyncBaseTransport | None

    async def _watch_external(self, worker: Worker) -> None:
        misses = 0
        while True:
            status = await self._health(worker)
            if status == "ok":
                misses = 0
                self.pool.set_health(worker, True, "ok")
            else:
                misses += 1
                if status is not None or misses >= MISSES_BEFORE_DOWN or not worker.healthy:
                    self.pool.set_health(worker, False, status or "down")
            # Poll fast until it is up, so a starting worker is used as soon as it can be.
            interval = self.cfg.health_interval_seconds
            if not worker.healthy:
                interval = min(interval, 0.5)
            await _first(worker.check_now, timeout=interval)
            worker.check_now.clear()

    async def _health(self, worker: Worker) -> str | None:
        """The worker's reported status ("ok", "loading", "error", ...); None if unreachable."""
        assert self._http is not None
        request = httpx.Request("GET", worker.url + "/health",
                                extensions={"timeout": _HEALTH_TIMEOUT})
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                response = await self._http.handle_async_request(request)
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
            status = orjson.loads(body).get("status")
        except (httpx.HTTPError, TimeoutError, orjson.JSONDecodeError, AttributeError):
            return None
        return status if isinstance(status, str) else None
