"""Helpers shared by the ledger tests."""

from __future__ import annotations

from typing import Any

from llm_gateway.accounting.record import UsageRecord


def make_record(n: int, **fields: Any) -> UsageRecord:
    """A plausible record for request `req_<n>`; `fields` override."""
    values: dict[str, Any] = dict(
        request_id=f"req_{n}", time=1_700_000_000.0 + n, key_id="k1", team="red",
        model="gpt-4o-mini", served_model="gpt-4o-mini", backend="openai", prompt_tokens=10,
        completion_tokens=5, cached_tokens=2, cost=0.001, latency_ms=12.5, ttft_ms=3.25,
        status=200, outcome="ok")
    values.update(fields)
    return UsageRecord(**values)
