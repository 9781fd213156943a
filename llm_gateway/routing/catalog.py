"""GET /v1/models: configured names and aliases merged with what the backends list themselves.

A backend's own list is fetched lazily, cached for its TTL, and only the models that routing
would actually send back to that backend are shown: the list is what a client can use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from llm_gateway.backends.base import Backend
from llm_gateway.echo import MAX_MODEL_NAME, clip
from llm_gateway.errors import ModelNotFound
from llm_gateway.routing.router import Router

log = logging.getLogger(__name__)

# What one backend's list may add: the first MAX_LISTED_MODELS models with a usable id (a
# string of at most MAX_MODEL_NAME characters, the longest a client may ask for). Large
# aggregators list a few hundred; an upstream listing millions must not grow the gateway.
MAX_LISTED_MODELS = 10_000
# Listed names that become `model` label values, over all backends; past them, `other`.
MAX_LABELLED_MODELS = 1_000


class _Listing:
    __slots__ = ("fetched_at", "lock", "models")

    def __init__(self) -> None:
        self.models: list[dict[str, Any]] | None = None
        self.fetched_at = float("-inf")
        self.lock = asyncio.Lock()


class ModelCatalog:
    def __init__(
        self,
        router: Router,
        backends: dict[str, Backend],
        *,
        created: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._backends = backends
        self._created = int(time.time()) if created is None else created
        self._clock = clock
        self._listings = {name: _Listing() for name in backends}
        # Names the backends list that route back to them, from the cached lists: what a
        # metric label may name beyond the configured names (see metrics.registry.ModelLabel).
        self.listed: frozenset[str] = frozenset()

    async def models(self) -> list[dict[str, Any]]:
        upstream_lists = await asyncio.gather(
            *(self._backend_models(name) for name in self._backends)
        )
        known: dict[str, dict[str, Any]] = {}
        by_backend = dict(zip(self._backends, upstream_lists, strict=True))
        for name, route in self._router.routes_exactly().items():
            backend_models = by_backend.get(route.backend.name) or []
            source = next((m for m in backend_models if m["id"] == route.target_model), None)
            known[name] = {
                "id": name,
                "object": "model",
                "created": (source or {}).get("created", self._created),
                "owned_by": (route.rule.owned_by if route.rule and route.rule.owned_by else None)
                or (source or {}).get("owned_by")
                or route.backend.name,
            }
        for name, models in by_backend.items():
            backend = self._backends[name]
            for model in models:
                if model["id"] not in known and self._router.claims(model["id"], backend):
                    known[model["id"]] = model
        return list(known.values())

    async def get(self, model_id: str) -> dict[str, Any]:
        for model in await self.models():
            if model["id"] == model_id:
                return model
        raise ModelNotFound(f"The model '{clip(model_id)}' does not exist", param="model")

    async def _backend_models(self, name: str) -> list[dict[str, Any]]:
        backend = self._backends[name]
        if not backend.lists_models:
            return []
        listing = self._listings[name]
        ttl = backend.models_ttl
        if listing.models is not None and self._clock() - listing.fetched_at < ttl:
            return listing.models
        async with listing.lock:  # one refresh at a time; the others reuse its answer
            if listing.models is not None and self._clock() - listing.fetched_at < ttl:
                return listing.models
            try:
                listing.models = _bounded(name, await backend.list_models())
            except Exception as exc:  # a listing failure must not break the endpoint
                log.warning("could not list models of backend %s: %s", name, exc)
                # Keep the stale list if any, and retry soon rather than hammering.
                listing.fetched_at = self._clock() - max(0.0, ttl - 10.0)
                return listing.models or []
            listing.fetched_at = self._clock()
            self._note_listed()
            return listing.models

    def _note_listed(self) -> None:
        listed: dict[str, None] = {}  # in the backends' order, each name once
        for name, listing in self._listings.items():
            for model in listing.models or ():
                if len(listed) >= MAX_LABELLED_MODELS:
                    break
                if self._router.claims(model["id"], self._backends[name]):
                    listed[model["id"]] = None
        self.listed = frozenset(listed)


def _bounded(backend: str, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    usable = [m for m in models if isinstance(m.get("id"), str)
              and 0 < len(m["id"]) <= MAX_MODEL_NAME]
    if len(usable) < len(models):
        log.warning("backend %s listed %d models whose id is empty or longer than %d "
                    "characters; they are left out", backend, len(models) - len(usable),
                    MAX_MODEL_NAME)
    if len(usable) > MAX_LISTED_MODELS:
        log.warning("backend %s listed %d models; the first %d are kept", backend,
                    len(usable), MAX_LISTED_MODELS)
        usable = usable[:MAX_LISTED_MODELS]
    return usable
