"""Helpers for the metrics tests: scraping /metrics and reading samples from it."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics, parsed: sample name -> {sorted label pairs: value}."""
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value)
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include ``labels`` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if want <= set(key))


def label_values(samples: dict, name: str, label: str) -> set[str]:
    return {dict(key)[label] for key in samples.get(name, {}) if label in dict(key)}


def settled(base: str, requests: int, timeout: float = 5.0) -> dict:
    """Scrape until `llm_gateway_requests_total` adds up to ``requests``, then return it.

    A request is recorded just after its last byte is sent, so a client can be a moment
    ahead of the count; with several processes, the others' counts arrive within a second.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base)
        total = value(samples, "llm_gateway_requests_total")
        if total == requests or time.monotonic() > deadline:
            assert total == requests, f"{total} requests counted, {requests} sent"
            return samples
        time.sleep(0.05)
