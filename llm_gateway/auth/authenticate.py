"""Turns a request's credentials into a Principal (auth.mode: none | keys | passthrough).

STUB: mode `none` only; the accounting issue's auth work replaces the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_gateway.auth.principal import ANONYMOUS, Principal
from llm_gateway.config import Config


class Authenticator:
    def __init__(self, config: Config, env: Mapping[str, str]) -> None:
        self.config = config
        self.env = env

    async def start(self, db: Any) -> None:
        """`db`: the opened storage.Database, or None when nothing is stored."""

    async def authenticate(self, scope: dict) -> Principal:
        """The caller of this ASGI request; raises AuthenticationFailed (401)."""
        return ANONYMOUS

    def check_model(self, principal: Principal, model: str) -> None:
        """Raises PermissionDenied (403) when the principal may not use `model`."""

    async def aclose(self) -> None:
        pass
