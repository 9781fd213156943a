"""`llm-gateway usage`: the usage ledger summed by team, key, model, deployment or day.

Reads the database the config names (storage.url, or SQLite in storage.data_dir), the same
report as GET /admin/usage. Records still in a running gateway's spool (at most a flush
interval old, or longer while its database is down) are not in it yet.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from llm_gateway.accounting.record import LEDGER_STEPS
from llm_gateway.accounting.report import GROUP_BY, UsageQuery, usage_report
from llm_gateway.accounting.report_csv import SUM_COLUMNS, columns, write_csv
from llm_gateway.auth.times import iso, parse_instant
from llm_gateway.config import Config, ConfigError, load_config
from llm_gateway.errors import GatewayError
from llm_gateway.storage.connect import connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $LLM_GATEWAY_CONFIG); "
                        "names the database (storage.url, storage.data_dir)")
    parser.add_argument("--team", help="only this team's requests")
    parser.add_argument("--key", help="only this key's requests (its key id)")
    parser.add_argument("--model", help="only requests for this model (the name asked)")
    parser.add_argument("--since", help="from: 2026-11-01, an ISO time, or back from now: 7d, "
                        "12h (default: the beginning)")
    parser.add_argument("--until", help="up to (excluded), same forms (default: now)")
    parser.add_argument("--group-by", choices=GROUP_BY, help="one row per team, key, model, "
                        "deployment (of a route's deployments) or UTC day (default: one row of "
                        "totals)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        now = time.time()
        query = UsageQuery(
            since=_instant(args.since, now, "since"), until=_instant(args.until, now, "until"),
            team=args.team, key_id=args.key, model=args.model, group_by=args.group_by)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"llm-gateway usage: {exc.message}", file=sys.stderr)
        return 2
    try:
        rows = asyncio.run(_report(config, query))
    except Exception as exc:  # the database cannot be reached or read: say which and why
        print(f"llm-gateway usage: cannot read the ledger ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    columns = _columns(query)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.format == "csv":
        write_csv(sys.stdout, rows, query.group_by)
    else:
        _print_table(rows, columns, query)
    return 0


def _instant(value: str | None, now: float, param: str) -> float | None:
    return None if value is None else parse_instant(value, now, param=param, future=False)


async def _report(config: Config, query: UsageQuery) -> list[dict[str, Any]]:
    db = await connect(config.storage.url, config)
    try:
        # A database no gateway has written to yet: an empty ledger, not an error.
        await db.migrate("ledger", LEDGER_STEPS)
        return await usage_report(db, query)
    finally:
        await db.aclose()


def _columns(query: UsageQuery) -> list[str]:
    return columns(query.group_by)


def _print_table(rows: list[dict[str, Any]], columns: list[str], query: UsageQuery) -> None:
    from rich.console import Console
    from rich.table import Table

    span = f"{iso(query.since) or 'the beginning'} to {iso(query.until) or 'now'}"
    table = Table(title=f"Usage, {span}", title_justify="left")
    for column in columns:
        numeric = column in SUM_COLUMNS
        table.add_column(column.replace("_", " "), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_shown(column, row.get(column)) for column in columns))
    Console().print(table)


def _shown(column: str, value: Any) -> str:
    if value is None:
        return "-" if column not in ("team", "key_id", "deployment") else "(none)"
    if column == "cost":
        return f"${value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
