"""The web console served at /ui/ (llm_gateway/console/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_gateway.config.checks import env_var_name


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True  # /ui/ (and / redirecting there); false: both are 404s
    # How long a sign-in lasts; the session is then gone and the user signs in again.
    session_hours: float = field(default=12.0, metadata={"gt": 0, "le": 8760})
    # The secret signing session cookies; unset = one derived from the key-hash secret (every
    # replica shares it), or a random one per process when there is no database (sessions
    # then live in the process's memory, so nothing else needs it).
    secret_env: str = field(default="LLM_GATEWAY_CONSOLE_SECRET",
                            metadata={"check": env_var_name})
