"""What GET /admin/models and `llm-gateway models` show of residency: each local model's
state and memory, and each device's budget. Times are epoch seconds (the API writes them as
ISO 8601)."""

from __future__ import annotations

from typing import Any

from llm_gateway.backends.residency_memory import CPU, MemoryBook, Slot


def model_view(book: MemoryBook, slot: Slot) -> dict[str, Any]:
    cfg = slot.cfg
    need = book.need(slot)
    source = ("memory_mib" if cfg.memory_mib is not None
              else "estimate" if slot.estimate is not None else None)
    memory: dict[str, dict[str, int | None]] = {}
    estimated = {CPU: need.workers * need.host_mib}
    if need.gpu_mib:
        placed = [g for g in slot.gpus if g is not None]
        for gpu in sorted(set(placed)):
            estimated[f"gpu{gpu}"] = need.gpu_mib * placed.count(gpu)
        if not placed:  # not loaded, or on no GPU in particular
            estimated["gpu"] = need.workers * need.gpu_mib
    used = slot.used
    for device, mib in estimated.items():
        memory[device] = {"estimated_mib": mib if source else None, "used_mib": None}
    if used is not None:
        memory.setdefault(CPU, {"estimated_mib": None, "used_mib": None})["used_mib"] = used.host
        for gpu, mib in used.gpu.items():
            memory.setdefault(f"gpu{gpu}", {"estimated_mib": None})["used_mib"] = mib
    return {
        "model": slot.name,
        "load": cfg.load,
        "pinned": cfg.pinned,
        "state": slot.state,
        "workers": cfg.worker_count,
        "workers_ready": slot.model.workers_ready(),
        "in_flight": slot.model.outstanding(),
        "waiting": slot.waiting,
        "gpus": [g for g in slot.gpus if g is not None],
        "estimated_mib": need.workers * (need.gpu_mib + need.host_mib) if source else None,
        "used_mib": (sum(used.gpu.values()) + used.host) if used is not None else None,
        "memory_source": source,
        "memory": memory,
        "idle_unload_seconds": cfg.idle_unload_seconds,
        "last_used": slot.last_used_at,
        "loaded_at": slot.loaded_at,
        "load_seconds": round(slot.load_seconds, 3) if slot.load_seconds is not None else None,
        "loads": slot.loads,
        "groups": list(slot.groups),
        "last_error": slot.last_error,
    }


def device_views(book: MemoryBook) -> list[dict[str, Any]]:
    budget, booked = book.budget(), book.booked()
    devices = [{"device": CPU, "budget_mib": budget.host, "booked_mib": booked.host,
                "total_mib": None, "used_mib": None}]
    for gpu in sorted({*budget.gpus, *book.gpu_memory}):
        nvml = book.gpu_memory.get(gpu)
        devices.append({
            "device": f"gpu{gpu}", "budget_mib": budget.gpus.get(gpu),
            "booked_mib": booked.gpu.get(gpu, 0),
            "total_mib": nvml.total_mib if nvml is not None else None,
            "used_mib": nvml.used_mib if nvml is not None else None,
        })
    return devices
