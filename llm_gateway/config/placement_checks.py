"""Rules between `placement` and the `local:` entries, and between a `local:` entry's
on-demand keys (config/loader.py calls `check_placement` with everything built)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .builder import Builder, join
from .placement import PlacementConfig
from .schema import LocalConfig


def check_placement(parts: Mapping[str, Any], b: Builder) -> None:
    """Rules between `placement` and the `local:` entries (config/loader.py calls this)."""
    local = parts.get("local")
    local = {n: c for n, c in local.items() if isinstance(c, LocalConfig)} \
        if isinstance(local, dict) else {}
    for name, cfg in local.items():
        _check_entry(join("local", name), cfg, b)
    placement = parts.get("placement")
    if not isinstance(placement, PlacementConfig):
        return
    ids = [g.id for g in placement.gpus]
    for i, gpu in enumerate(placement.gpus):
        if gpu.id in ids[:i]:
            b.fail(f"placement.gpus[{i}].id", f"duplicate GPU id {gpu.id}")
    if ids:
        for name, cfg in local.items():
            for i, gpu in enumerate(cfg.gpus):
                if gpu not in ids:
                    b.fail(f"{join('local', name)}.gpus[{i}]",
                           f"GPU {gpu} is not in placement.gpus (ids: {ids})")
    for group_name, group in placement.groups.items():
        path = join(join("placement.groups", group_name), "models")
        for i, model in enumerate(group.models):
            where = f"{path}[{i}]"
            cfg = local.get(model)
            if model in group.models[:i]:
                b.fail(where, f"{model!r} is listed twice")
            elif cfg is None:
                b.fail(where, f"unknown local model {model!r} "
                       f"(known: {', '.join(local) or 'none'})")
            elif group.mode == "exclusive" and (cfg.load == "resident" or cfg.pinned):
                b.fail(where, f"{model!r} is never unloaded ("
                       f"{'pinned' if cfg.pinned else 'load: resident'}), so the other models "
                       "of this exclusive group could never load")


def _check_entry(path: str, cfg: LocalConfig, b: Builder) -> None:
    if cfg.load == "on_demand":
        if not cfg.spawns:
            b.fail(f"{path}.load", "on_demand needs workers the gateway spawns "
                   "(not with urls or discovery)")
        if cfg.pinned and cfg.idle_unload_seconds is not None:
            b.fail(f"{path}.idle_unload_seconds", "a pinned model is never unloaded; "
                   "set pinned or idle_unload_seconds, not both")
        return
    # A key that does nothing misleads: these only mean something for on_demand models.
    if cfg.idle_unload_seconds is not None:
        b.fail(f"{path}.idle_unload_seconds", "only with load: on_demand (a resident model "
               "is never unloaded)")
    if cfg.pinned:
        b.fail(f"{path}.pinned", "only with load: on_demand (a resident model is always loaded)")
