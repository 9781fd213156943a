"""Upper bounds of what the admin API and the CLI may store for a key or a team.

Checked on the way in only: a row stored before a bound existed (or by hand) still reads,
lists and works, so tightening a bound never locks anyone out of the listing.
"""

from __future__ import annotations

import math
from typing import Any

from llm_gateway.config.access import MAX_COST, MAX_COUNT, BudgetConfig, RateLimitConfig
from llm_gateway.echo import MAX_MODEL_NAME
from llm_gateway.errors import InvalidRequest

MAX_MODELS = 1000  # entries in a key's or team's `models`


def check_access(changes: dict[str, Any]) -> None:
    """Raise a 400 naming the field when a value in `access_changes`' result is out of range."""
    limits: RateLimitConfig | None = changes.get("limits")
    if limits is not None:
        _count(limits.rpm, "limits.rpm")
        _count(limits.tpm, "limits.tpm")
    budget: BudgetConfig | None = changes.get("budget")
    if budget is not None:
        _count(budget.tokens, "budget.tokens")
        if budget.cost is not None and not (math.isfinite(budget.cost)
                                            and budget.cost <= MAX_COST):
            raise InvalidRequest(f"'budget.cost' must be a number from 0 to {MAX_COST:.0e} "
                                 "(USD).", param="budget.cost", code="invalid_value")
    models = changes.get("models")
    if models is not None:
        if len(models) > MAX_MODELS:
            raise InvalidRequest(f"'models' may list at most {MAX_MODELS} names.",
                                 param="models", code="invalid_value")
        if any(len(m) > MAX_MODEL_NAME for m in models):
            raise InvalidRequest(f"'models': a model name or glob may be at most "
                                 f"{MAX_MODEL_NAME} characters long.", param="models",
                                 code="invalid_value")


def _count(value: int | None, param: str) -> None:
    if value is not None and value > MAX_COUNT:
        raise InvalidRequest(f"'{param}' must be at most {MAX_COUNT:,} (got a larger number).",
                             param=param, code="invalid_value")
