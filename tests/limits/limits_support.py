"""Helpers for the limits tests: a call, a principal with limits, a ledger to seed budgets."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from llm_gateway.call import Call
from llm_gateway.config import parse_config
from llm_gateway.config.access import BudgetConfig, RateLimitConfig
from llm_gateway.limits.gate import Gate
from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.principal import Principal


class Clock:
    """An injectable clock: tests move time, nothing sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SpendLedger:
    """Answers `Ledger.spent` like the real ledger: what was charged since a time. Records
    every question, and can be told to fail like a database that is down."""

    def __init__(self, tokens: int = 0, cost: float = 0.0) -> None:
        self.tokens = tokens
        self.cost = cost
        self.asked: list[dict[str, Any]] = []
        self.down = False

    async def spent(self, *, key_id: str | None = None, team: str | None = None,
                    since: float) -> tuple[int, float]:
        self.asked.append({"key_id": key_id, "team": team, "since": since})
        if self.down:
            raise ConnectionError("database is down")
        return self.tokens, self.cost


def unique(prefix: str) -> str:
    """Names that no other test (nor an earlier run, through a shared Redis) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def chat(model: str = "gpt-4o-mini", content: str = "abcd", max_tokens: int | None = 50,
         **extra: Any) -> Call:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}],
                            **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return Call(operation="createChatCompletion", endpoint="/chat/completions", model=model,
                body=body, raw=orjson.dumps(body), stream=False, request_id="req_t")


def principal(key_limits: RateLimitConfig | None = None, team: str | None = None,
              team_limits: RateLimitConfig | None = None,
              key_budget: BudgetConfig | None = None,
              team_budget: BudgetConfig | None = None) -> Principal:
    return Principal(key_id=unique("key"), team=team, key_limits=key_limits,
                     team_limits=team_limits, key_budget=key_budget, team_budget=team_budget)


def gate(redis: str | None = None, metrics: GatewayMetrics | None = None,
         clocks: dict[str, Clock] | None = None, **sections: Any) -> Gate:
    """A Gate for this config (`limits`, `accounting`, ...), sharing `redis` if given;
    `clocks`: "monotonic" and/or "wall"."""
    data: dict[str, Any] = {"models": [], **sections}
    if redis is not None:
        data.setdefault("storage", {})["redis_url"] = redis
    return Gate(parse_config(data, env={}), {}, metrics, **(clocks or {}))
