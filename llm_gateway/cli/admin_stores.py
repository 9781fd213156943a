"""What `llm-gateway keys` and `llm-gateway teams` share: the stores over the config's
database, flags turned into the admin API's JSON fields, and output as tables or JSON.

The commands call the same KeyStore / TeamStore as the admin API with the same field dicts,
so a rule (a team must exist, an expiry must be in the future...) is checked in one place.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.auth.keystore import KeyStore
from llm_gateway.auth.schema import AUTH_STEPS
from llm_gateway.auth.secret import load_hasher
from llm_gateway.auth.teamstore import TeamStore
from llm_gateway.auth.times import iso
from llm_gateway.config import ConfigError, load_config
from llm_gateway.errors import GatewayError


@dataclass
class Stores:
    keys: KeyStore
    teams: TeamStore


def subcommand(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand with the options every keys/teams command has: --config and --format."""
    parser = sub.add_parser(name, help=text)
    parser.add_argument("--config", help="YAML config file (default: $LLM_GATEWAY_CONFIG); "
                        "names the database (storage.url, storage.data_dir)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def add_settings(parser: argparse.ArgumentParser) -> None:
    """Flags shared by keys and teams: allowed models and endpoints, limits and budget."""
    parser.add_argument("--models", nargs="+", metavar="MODEL",
                        help="allowed model names or globs (default: every model)")
    parser.add_argument("--endpoints", nargs="+", metavar="FAMILY",
                        help="allowed passthrough endpoint families, e.g. files images audio "
                             "(default: what routing.passthrough_endpoints allows)")
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--budget-tokens", type=int, help="tokens per budget period")
    parser.add_argument("--budget-cost", type=float, help="USD per budget period")
    parser.add_argument("--period", choices=("day", "month", "total"),
                        help="budget period (default: month)")


def settings_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The admin API's fields for the settings flags given (absent flags: unchanged)."""
    fields: dict[str, Any] = {}
    if args.models is not None:
        # `--models a,b` and `--models a b` both work.
        fields["models"] = [m for item in args.models for m in item.split(",") if m]
    if args.endpoints is not None:
        fields["endpoints"] = [e for item in args.endpoints for e in item.split(",") if e]
    if args.rpm is not None or args.tpm is not None:
        fields["limits"] = {"rpm": args.rpm, "tpm": args.tpm}
    if args.budget_tokens is not None or args.budget_cost is not None:
        fields["budget"] = {"tokens": args.budget_tokens, "cost": args.budget_cost,
                            "period": args.period or "month"}
    elif args.period is not None:
        raise SystemExit("llm-gateway: --period needs --budget-tokens or --budget-cost")
    return fields


@asynccontextmanager
async def open_stores(config_path: str | None):
    from llm_gateway.storage.connect import connect

    env = os.environ
    config = load_config(config_path, env=env)
    db = await connect(config.storage.url, config)
    try:
        await db.migrate("auth", AUTH_STEPS)
        teams = TeamStore(db, config.teams)
        yield Stores(KeyStore(db, load_hasher(config, env), teams), teams)
    finally:
        await db.aclose()


def run(config_path: str | None, action: Callable[[Stores], Awaitable[int]]) -> int:
    """Run `action` against the stores; errors become one line on stderr and exit 1."""
    async def go() -> int:
        async with open_stores(config_path) as stores:
            return await action(stores)

    try:
        return asyncio.run(go())
    except ConfigError as exc:
        print(f"llm-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"llm-gateway: {exc.message}", file=sys.stderr)
        return 1


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(columns):
        # The first column names the row (an id): never folded, so it can be copied.
        table.add_column(column, overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def print_object(title: str, obj: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print_json(obj)
    else:
        print_fields(title, obj)


def print_fields(title: str, obj: dict[str, Any]) -> None:
    """One object as a two-column table (nested values as compact JSON)."""
    rows = [[name, _show(name, value)] for name, value in obj.items() if name != "object"]
    print_table(title, ["field", "value"], rows)


def _show(name: str, value: Any) -> str:
    if name.endswith("_at") and isinstance(value, int):
        return iso(value) or ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def limits_text(value: dict[str, Any] | None) -> str:
    if not value:
        return ""
    return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)


def budget_text(value: dict[str, Any] | None) -> str:
    if not value:
        return ""
    parts = []
    if value.get("tokens") is not None:
        parts.append(f"{value['tokens']} tokens")
    if value.get("cost") is not None:
        parts.append(f"${value['cost']:g}")
    return f"{' + '.join(parts)} / {value.get('period', 'month')}"
