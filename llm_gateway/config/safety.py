"""Start-up refusals for combinations that are valid field by field but unsafe together.

- An open gateway on the network: ``auth.mode: none`` (the default) on a non-loopback
  ``server.host`` lets anyone who reaches the port spend the gateway's upstream keys. Allowed
  only when ``auth.mode: none`` is written (in the file or as an env override).
- Limits counted per process: with ``server.workers`` > 1 and no ``storage.redis_url`` each
  process would hold its own rate-limit and budget counters, so N processes admit up to N
  times a limit. Refused whenever a limit or budget may apply (any in the config, or keys
  mode, whose stored keys and teams may carry their own).

``serve --host/--workers`` reach these checks as env overrides, so the command line cannot
get around them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .access import AuthConfig, LimitsConfig, TeamConfig
from .accounting import StorageConfig
from .schema import ServerConfig

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost).

    Any other name counts as the network: what it resolves to is not ours to trust.
    """
    name = host.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def mode_written(data: Mapping[str, Any]) -> bool:
    """Whether the file or an env override sets ``auth.mode`` itself (not the default)."""
    auth = data.get("auth")
    return isinstance(auth, Mapping) and auth.get("mode") is not None


def problems(parts: Mapping[str, Any], data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each unsafe combination in ``parts`` (the built sections) as (path, message);
    ``data``: the YAML data after env overrides, to tell a written auth.mode from none."""
    found: list[tuple[str, str]] = []
    server = parts.get("server", ServerConfig())
    auth = parts.get("auth", AuthConfig())
    if not isinstance(server, ServerConfig) or not isinstance(auth, AuthConfig):
        return found  # their own problems are reported already
    if auth.mode == "none" and not is_loopback(server.host) and not mode_written(data):
        found.append(("auth.mode", open_gateway_message(server.host)))
    storage = parts.get("storage", StorageConfig())
    if (server.workers > 1 and isinstance(storage, StorageConfig)
            and storage.redis_url is None and (reason := _limited(parts, auth))):
        found.append(("storage.redis_url", per_process_message(server.workers, reason)))
    return found


def open_gateway_message(host: str) -> str:
    return (
        f"not set, and server.host {host} is reachable from the network: anyone who reaches "
        "it would use the gateway and its upstream keys. Choose one: `auth.mode: keys` "
        "(clients need a gateway key; set the admin key's variable, LLM_GATEWAY_ADMIN_KEY by "
        "default, to create them), `auth.mode: passthrough` (clients bring their own upstream "
        "key), or write `auth.mode: none` to accept an open gateway; or listen on 127.0.0.1 "
        "(server.host)"
    )


def per_process_message(workers: int, reason: str) -> str:
    return (
        f"not set, but server.workers is {workers} and {reason}: each process would count "
        "rate limits and budgets on its own, admitting up to "
        f"{workers} times a limit. Set storage.redis_url (redis://host:6379/0) so the "
        "processes share them, or use server.workers: 1 (and scale with replicas sharing "
        "Redis)"
    )


def _limited(parts: Mapping[str, Any], auth: AuthConfig) -> str | None:
    """Why limits or budgets may apply to some call, or None when none can."""
    if auth.mode == "keys":
        return "auth.mode is keys (stored keys and teams may carry limits and budgets)"
    limits = parts.get("limits")
    if isinstance(limits, LimitsConfig):
        if limits.models:
            return "limits.models is set"
        if limits.key_default is not None:
            return "limits.key_default is set"
    teams = parts.get("teams")
    for name, team in (teams.items() if isinstance(teams, Mapping) else ()):
        if isinstance(team, TeamConfig) and (team.limits is not None or team.budget is not None):
            return f"teams.{name} has limits or a budget"
    return None
