"""Attributes each request's usage: a ledger record, and the admission settled with it.

STUB: records nothing; the accounting issue replaces the body.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.backends.base import Backend
from llm_gateway.call import Call, Result
from llm_gateway.config import Config
from llm_gateway.errors import GatewayError
from llm_gateway.limits.gate import Admission


class Accountant:
    def __init__(self, config: Config, env: Mapping[str, str],
                 backends: Mapping[str, Backend]) -> None:
        self.config = config
        self.backends = backends  # to ask a local worker what a cut stream had produced
        self.ledger = None  # accounting.ledger.Ledger once started, when enabled

    async def start(self, db: object) -> None:
        pass

    def prepare(self, call: Call) -> None:
        """Before the backend call: ask for stream usage the client did not ask for."""

    def track(self, call: Call, admission: Admission, result: Result, started: float) -> Result:
        """The result as the client will get it; its record is written when it is over."""
        admission.settle(0, 0.0)
        return result

    def failed(self, call: Call, admission: Admission, error: GatewayError,
               started: float) -> None:
        """The call ended in an error before any result."""
        admission.settle(0, 0.0)

    async def aclose(self) -> None:
        pass
