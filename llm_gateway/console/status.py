"""Live status: what GET /admin/deployments and GET /admin/models report, and each local
worker as the gateway sees it plus what its own `GET /health` says now (queue, active
sequences, KV use, tokens/s)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from llm_gateway.api.admin_models import snapshot
from llm_gateway.api.state import State
from llm_gateway.backends.local import LocalBackend
from llm_gateway.backends.pool import Worker

HEALTH_SECONDS = 1.0
_FROM_HEALTH = ("queue_depth", "active", "max_queue", "parallel", "kv_cache_usage",
                "tokens_per_second", "n_ctx", "engine")


async def status_json(state: State) -> dict[str, Any]:
    deployments = [group.snapshot() for group in state.router.groups.values()]
    locals_ = [(name, b) for name, b in state.backends.items() if isinstance(b, LocalBackend)]
    # trust_env=False: our own workers, never through a proxy the environment names.
    async with httpx.AsyncClient(timeout=HEALTH_SECONDS, trust_env=False) as client:
        workers = await asyncio.gather(*(
            _worker(client, name, worker) for name, backend in locals_
            for worker in backend.pool.workers))
    return {"deployments": deployments, "models": snapshot(state), "workers": workers,
            "backends": sorted(state.backends)}


async def _worker(client: httpx.AsyncClient, backend: str, worker: Worker) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "index": worker.index, "status": worker.status,
                           "healthy": worker.healthy, "in_flight": worker.outstanding,
                           "restarts": worker.restarts}
    if not worker.url:
        return out
    try:
        answer = await client.get(worker.url + "/health")
        health = orjson.loads(answer.content)
    except (httpx.HTTPError, orjson.JSONDecodeError):
        return out
    if isinstance(health, dict):
        out.update({k: health.get(k) for k in _FROM_HEALTH})
    return out
