"""Fitting local models into the memory budget: which GPU each worker goes to, and which idle
models are unloaded to make room. Pure functions over numbers; residency.py holds the state.

- A model's **need** is per worker: MiB on one GPU (0 when no layer is offloaded) and MiB of
  host memory. Workers of an entry with `gpus` go to those GPUs; the others to the GPU with the
  most room that fits them (one GPU per worker). With no GPU in the budget nothing is checked
  for GPUs and no GPU is chosen (the worker sees them all, as without a budget).
- To **plan** a load: models of an `exclusive` group the model shares are unloaded first (if
  one of them is busy, loading, or never unloaded, the load waits). Then, while it does not
  fit, idle models are unloaded, least recently used first, those sharing a `together` group
  with it last, and only those holding memory where it is short. Then the victims not needed
  after all are spared (the most recently used first).
- A plan is **blocked** when even that does not fit; it **never** fits when it would not even
  with every model unloaded that ever can be (resident and pinned models stay).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Why a model is unloaded: to make room (memory), for an exclusive group member (exclusive),
# after its idle TTL (idle), a failed load (failed), or the gateway stopping (shutdown).
EVICT_MEMORY, EVICT_EXCLUSIVE = "memory", "exclusive"


@dataclass(frozen=True)
class Booking:
    """Memory a loaded or loading model holds: MiB per GPU id, and MiB of host memory."""

    gpu: dict[int, int] = field(default_factory=dict)
    host: int = 0

    def __add__(self, other: Booking) -> Booking:
        gpu = Counter(self.gpu)
        gpu.update(other.gpu)
        return Booking(dict(gpu), self.host + other.host)

    def __sub__(self, other: Booking) -> Booking:
        gpu = {g: mib - other.gpu.get(g, 0) for g, mib in self.gpu.items()}
        return Booking(gpu, self.host - other.host)


@dataclass(frozen=True)
class Need:
    workers: int
    gpu_mib: int  # per worker, on its GPU
    host_mib: int  # per worker
    fixed_gpus: tuple[int, ...] = ()  # `local.<name>.gpus`: one worker on each


@dataclass(frozen=True)
class Budget:
    gpus: dict[int, int | None] = field(default_factory=dict)  # id -> MiB; None: no limit
    host: int | None = None  # None: no limit


@dataclass(frozen=True)
class Candidate:
    """Another model, as the planner sees it."""

    name: str
    booking: Booking
    evictable: bool  # loaded, idle, neither pinned nor resident
    permanent: bool  # never unloaded: resident or pinned (and loaded)
    last_used: float
    together: bool = False  # shares a `together` group with the model to load
    exclusive: bool = False  # shares an `exclusive` group with it


@dataclass(frozen=True)
class Plan:
    gpus: list[int | None]  # per worker: its GPU, or None (no GPU chosen)
    booking: Booking
    victims: list[tuple[str, str]]  # (model, reason), to unload before the load


@dataclass(frozen=True)
class Blocked:
    reason: str
    never: bool = False  # it cannot fit even with every model that may be unloaded unloaded


def fit(need: Need, budget: Budget, used: Booking) -> list[int | None] | None:
    """Each worker's GPU when the model fits beside ``used``; None when it does not."""
    if budget.host is not None and used.host + need.workers * need.host_mib > budget.host:
        return None
    if need.gpu_mib == 0 or not budget.gpus:
        return [*need.fixed_gpus] or [None] * need.workers
    taken = dict(used.gpu)
    gpus: list[int | None] = []
    for i in range(need.workers):
        if need.fixed_gpus:
            choices = [need.fixed_gpus[i]]
        else:  # the most room first; an unlimited GPU counts as endless room
            choices = sorted(budget.gpus, key=lambda g: _room(budget, taken, g), reverse=True)
        chosen = next((g for g in choices if _room(budget, taken, g) >= need.gpu_mib), None)
        if chosen is None:
            return None
        taken[chosen] = taken.get(chosen, 0) + need.gpu_mib
        gpus.append(chosen)
    return gpus


def _room(budget: Budget, taken: dict[int, int], gpu: int) -> float:
    cap = budget.gpus.get(gpu)
    if gpu not in budget.gpus:
        return float("-inf")  # a fixed GPU outside the budget (config checks forbid it)
    return float("inf") if cap is None else cap - taken.get(gpu, 0)


def booking_of(need: Need, gpus: list[int | None], budget: Budget) -> Booking:
    """What a model placed on ``gpus`` holds. A worker not given one GPU sees them all, and
    llama.cpp spreads its layers over them: its need is booked on each in equal parts."""
    per_gpu: Counter[int] = Counter()
    if need.gpu_mib:
        for gpu in gpus:
            if gpu is not None:
                per_gpu[gpu] += need.gpu_mib
            elif budget.gpus:
                share = -(-need.gpu_mib // len(budget.gpus))
                per_gpu.update({g: share for g in budget.gpus})
    return Booking(dict(per_gpu), need.workers * need.host_mib)


def plan(need: Need, budget: Budget, others: list[Candidate]) -> Plan | Blocked:
    """How to load a model beside ``others`` (every other model holding memory)."""
    victims = [c for c in others if c.exclusive]
    for c in victims:
        if not c.evictable:
            return Blocked(f"{c.name!r}, of an exclusive group with it, is "
                           f"{'never unloaded' if c.permanent else 'in use'}",
                           never=c.permanent)
    kept = [c for c in others if not c.exclusive]
    used = _total(kept)
    gpus = fit(need, budget, used)
    if gpus is None:
        order = sorted((c for c in kept if c.evictable), key=lambda c: (c.together, c.last_used))
        for c in order:
            if not _helps(c, need, budget, used):
                continue
            victims.append(c)
            used = used - c.booking
            if (gpus := fit(need, budget, used)) is not None:
                break
    if gpus is None:
        held = _total([c for c in others if c.permanent])
        if fit(need, budget, held) is None:
            return Blocked(_too_big(need, budget, held), never=True)
        return Blocked("the models holding the memory it needs are in use or loading")
    for c in reversed([v for v in victims if not v.exclusive]):  # spare the unneeded ones
        if (spared := fit(need, budget, used + c.booking)) is not None:
            victims.remove(c)
            used, gpus = used + c.booking, spared
    reasons = [(c.name, EVICT_EXCLUSIVE if c.exclusive else EVICT_MEMORY) for c in victims]
    return Plan(gpus, booking_of(need, gpus, budget), reasons)


def _total(candidates: list[Candidate]) -> Booking:
    total = Booking()
    for c in candidates:
        total = total + c.booking
    return total


def _helps(c: Candidate, need: Need, budget: Budget, used: Booking) -> bool:
    """Whether unloading ``c`` frees memory where the model is short of it."""
    host_short = budget.host is not None and (
        used.host + need.workers * need.host_mib > budget.host)
    if host_short and c.booking.host > 0:
        return True
    wanted = set(need.fixed_gpus) or set(budget.gpus)
    return need.gpu_mib > 0 and any(c.booking.gpu.get(g, 0) > 0 for g in wanted)


def _too_big(need: Need, budget: Budget, held: Booking) -> str:
    if budget.host is not None and held.host + need.workers * need.host_mib > budget.host:
        return (f"it needs {need.workers * need.host_mib:,} MiB of host memory "
                f"({need.workers} x {need.host_mib:,}); placement.cpu_memory_mib is "
                f"{budget.host:,}, of which models that stay loaded hold {held.host:,}")
    sizes = ", ".join(f"GPU {g}: {'no limit' if m is None else f'{m:,} MiB'}"
                      f" ({held.gpu.get(g, 0):,} held by models that stay loaded)"
                      for g, m in budget.gpus.items())
    return f"each of its {need.workers} worker(s) needs {need.gpu_mib:,} MiB on one GPU; {sizes}"
