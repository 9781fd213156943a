"""What a request cost: `accounting.prices`, USD per million tokens, by model name or glob."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from llm_gateway.config.accounting import PriceConfig
from llm_gateway.usage import Usage

PER = 1_000_000
FREE = PriceConfig()  # unpriced models (local ones, unless priced) cost nothing


class Prices:
    """Exact names first, then globs in config order; the lookup is cached per name."""

    def __init__(self, prices: Mapping[str, PriceConfig]) -> None:
        self._exact = {name: p for name, p in prices.items() if not _is_glob(name)}
        self._globs = [(name, p) for name, p in prices.items() if _is_glob(name)]
        self._cache: dict[str, PriceConfig] = {}

    def price_of(self, *models: str | None) -> PriceConfig:
        """The price of the first of `models` that is priced (the name served, then the name
        asked: a renamed route is priced by what the backend really ran, or by its alias)."""
        for model in models:
            if model:
                price = self._lookup(model)
                if price is not None:
                    return price
        return FREE

    def _lookup(self, model: str) -> PriceConfig | None:
        if model in self._cache:
            return self._cache[model]
        price = self._exact.get(model)
        if price is None:
            price = next((p for name, p in self._globs if fnmatchcase(model, name)), None)
        if len(self._cache) < 10_000:  # names come from clients: keep the cache bounded
            self._cache[model] = price  # type: ignore[assignment]
        return price

    def cost(self, usage: Usage | None, *models: str | None) -> float:
        if usage is None:
            return 0.0
        return cost(usage, self.price_of(*models))


def cost(usage: Usage, price: PriceConfig) -> float:
    """(prompt - cached) * input + cached * cached_input (or input) + completion * output."""
    cached = min(usage.cached, usage.prompt)
    cached_price = price.input if price.cached_input is None else price.cached_input
    return ((usage.prompt - cached) * price.input + cached * cached_price
            + usage.completion * price.output) / PER


def _is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")
