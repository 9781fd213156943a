"""The grouping layer between limits and routing.

STUB: every call goes to the backend; the grouping issue replaces the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from llm_gateway.auth.principal import Principal
from llm_gateway.call import Call, Result
from llm_gateway.config import Config

Produce = Callable[[Call], Awaitable[Result]]


class Grouper:
    def __init__(self, config: Config, env: Mapping[str, str]) -> None:
        self.config = config

    async def start(self) -> None:
        pass

    async def run(self, call: Call, principal: Principal, produce: Produce) -> Result:
        """The call's Result: from `produce` (the backend), a shared call, or the cache.
        Sets `Result.grouping`."""
        return await produce(call)

    async def aclose(self) -> None:
        pass
