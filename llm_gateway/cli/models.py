"""`llm-gateway models`: the local models of a running gateway, loaded or not, with their
memory, last use and load time (GET /admin/models).

Unlike `keys`, `teams` and `usage`, which read the database, this asks the running gateway:
which model is loaded lives in its memory only. The gateway's address is ``--url``, else
``server.host`` and ``server.port`` from the config; the admin key is read from the
environment variable the config names (``auth.admin_key_env``).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from llm_gateway.config import Config, ConfigError, load_config

COLUMNS = ("model", "load", "state", "workers", "memory", "last used", "load time", "loads")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $LLM_GATEWAY_CONFIG); "
                        "names the gateway's address and its admin key's variable")
    parser.add_argument("--url", help="the gateway, e.g. http://127.0.0.1:8080 (default: "
                        "server.host and server.port)")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"llm-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    url = (args.url or _address(config)).rstrip("/")
    key = os.environ.get(config.auth.admin_key_env)
    if not key:
        print(f"llm-gateway models: set {config.auth.admin_key_env} to the gateway's admin key",
              file=sys.stderr)
        return 2
    try:
        reply = httpx.get(url + "/admin/models", headers={"authorization": f"Bearer {key}"},
                          timeout=10)
    except httpx.HTTPError as exc:
        print(f"llm-gateway models: cannot reach {url} ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    if reply.status_code != 200:
        print(f"llm-gateway models: {url} answered {reply.status_code}: {_message(reply)}",
              file=sys.stderr)
        return 1
    listing = reply.json()
    if args.format == "json":
        sys.stdout.write(orjson.dumps(listing, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_table(listing)
    return 0


def _address(config: Config) -> str:
    """Where a gateway bound to server.host is reached (a wildcard: on loopback)."""
    host = config.server.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{config.server.port}"


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return reply.text[:200]


def _print_table(listing: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Local models", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("loads", "workers") else "left")
    for m in listing.get("data", []):
        table.add_row(
            m["model"], m["load"] + (" (pinned)" if m.get("pinned") else ""),
            m["state"] + (f": {m['last_error']}" if m.get("last_error") else ""),
            f"{m['workers_ready']}/{m['workers']}", _memory(m), _ago(m.get("last_used")),
            "-" if m.get("load_seconds") is None else f"{m['load_seconds']:.1f} s",
            str(m.get("loads", 0)))
    console = Console()
    console.print(table)
    devices = Table(title="Memory by device (MiB)", title_justify="left")
    for column in ("device", "budget", "booked", "used", "total"):
        devices.add_column(column, justify="left" if column == "device" else "right")
    for d in listing.get("devices", []):
        devices.add_row(d["device"], *(_mib(d.get(k)) for k in ("budget_mib", "booked_mib",
                                                                "used_mib", "total_mib")))
    console.print(devices)


def _memory(m: dict[str, Any]) -> str:
    estimated, used = m.get("estimated_mib"), m.get("used_mib")
    text = f"{_mib(estimated)} MiB est." if estimated is not None else "? est."
    return text + (f", {_mib(used)} used" if used is not None else "")


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ago(when: str | None) -> str:
    if not when:
        return "never"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(when.replace("Z", "+00:00")))
    s = max(0, int(seconds.total_seconds()))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"
