"""The order a route tries its available deployments in, by its strategy.

- weighted: a random order drawn by weight (a deployment with weight 3 comes first three
  times as often as one with weight 1), so retries also spread by weight;
- least_inflight: the fewest calls open now first (ties by weight, at random);
- latency: the lowest recent time to first byte first; an untried deployment counts as the
  fastest, so each is measured once before the numbers decide;
- priority: the lowest priority number first, weighted at random within one priority.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from llm_gateway.routing.deployment import Deployment

Order = Callable[[Sequence[Deployment], random.Random], list[Deployment]]


def _weighted_keys(deployments: Sequence[Deployment], rng: random.Random) -> dict[int, float]:
    # Efraimidis-Spirakis: sorting by u ** (1 / w) draws an order without replacement by weight.
    return {id(d): rng.random() ** (1.0 / d.weight) for d in deployments}


def weighted(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    if len(deployments) < 2:
        return list(deployments)
    keys = _weighted_keys(deployments, rng)
    return sorted(deployments, key=lambda d: keys[id(d)], reverse=True)


def least_inflight(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    keys = _weighted_keys(deployments, rng)
    return sorted(deployments, key=lambda d: (d.inflight, -keys[id(d)]))


def latency(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    keys = _weighted_keys(deployments, rng)
    return sorted(deployments, key=lambda d: (d.latency or 0.0, -keys[id(d)]))


def priority(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    keys = _weighted_keys(deployments, rng)
    return sorted(deployments, key=lambda d: (d.priority, -keys[id(d)]))


STRATEGIES: dict[str, Order] = {
    "weighted": weighted,
    "least_inflight": least_inflight,
    "latency": latency,
    "priority": priority,
}
