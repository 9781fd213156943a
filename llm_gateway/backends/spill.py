"""Spill-over: a local backend whose workers are all full passes the call to its fallback model.

The router wraps every backend that has a ``fallback`` in a `SpillOver`, so the layers above
call one Backend and never see `BackendSaturated`. The fallback is resolved by the router
(``resolve``) to that route's own backend, never to its wrapper: a call spills once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_gateway.backends.base import Backend
from llm_gateway.backends.local import BackendSaturated
from llm_gateway.call import Call, Result
from llm_gateway.usage import Usage


class SpillOver(Backend):
    def __init__(self, inner: Backend, resolve: Callable[[str], tuple[Backend, str]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.local = inner.local
        self.fallback = inner.fallback
        self.lists_models = inner.lists_models
        self.models_ttl = inner.models_ttl
        self.responses_api = inner.responses_api
        self._resolve = resolve  # model name -> (its route's backend, the name it must see)

    async def complete(self, call: Call) -> Result:
        try:
            return await self.inner.complete(call)
        except BackendSaturated as full:
            backend, target_model = self._resolve(full.fallback)
            call.target_model = target_model
            principal = call.principal
            if principal is not None and principal.credentials:
                call.credentials = principal.credentials_for(backend.name)
            try:
                result = await backend.complete(call)
            except BackendSaturated:
                return full.result  # the fallback is full too: the workers' own 429
            result.spilled_from = self.name
            return result

    async def list_models(self) -> list[dict[str, Any]]:
        return await self.inner.list_models()

    async def usage_of(self, call_id: str) -> Usage | None:
        return await self.inner.usage_of(call_id)

    def problem(self) -> str | None:
        return self.inner.problem()

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()
