"""GET /admin/models: every local model, loaded or not: its state, memory (estimated and
used), last use and load time, and each device's memory budget, in this process."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from llm_gateway.api.admin_auth import admin_state, json_response
from llm_gateway.api.state import State
from llm_gateway.auth.times import iso
from llm_gateway.backends.local import LocalBackend
from llm_gateway.backends.residency_view import device_views, model_view
from llm_gateway.web.responses import BytesResponse


async def models(request: Request) -> BytesResponse:
    state = admin_state(request)
    return json_response(snapshot(state))


def snapshot(state: State) -> dict[str, Any]:
    residency = state.residency
    data = []
    for name, backend in state.backends.items():
        if not isinstance(backend, LocalBackend):
            continue
        if residency is not None and name in residency.slots:
            view = model_view(residency, residency.slots[name])
            view["last_used"], view["loaded_at"] = iso(view["last_used"]), iso(view["loaded_at"])
        else:
            view = _external(name, backend)
        data.append(view)
    devices = device_views(residency) if residency is not None else []
    return {"object": "list", "data": data, "devices": devices}


def _external(name: str, backend: LocalBackend) -> dict[str, Any]:
    """Workers someone else runs (urls, discovery): only their health is known."""
    workers = backend.pool.workers
    ready = sum(w.healthy for w in workers)
    return {"model": name, "load": "external", "pinned": False,
            "state": "loaded" if ready else "unavailable", "workers": len(workers),
            "workers_ready": ready, "in_flight": backend.outstanding(), "waiting": 0,
            "gpus": [], "estimated_mib": None, "used_mib": None, "memory_source": None,
            "memory": {}, "idle_unload_seconds": None, "last_used": None, "loaded_at": None,
            "load_seconds": None, "loads": 0, "groups": [], "last_error": None}
