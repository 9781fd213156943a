"""`llm-gateway teams create|list|show|update`.

Works on the database the config names, through the same TeamStore as /admin/teams. Teams
declared in the config file are listed too, and are read-only here.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from llm_gateway.cli.admin_stores import (
    Stores,
    add_settings,
    budget_text,
    limits_text,
    print_fields,
    print_json,
    print_object,
    print_table,
    run,
    settings_fields,
    subcommand,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="teams_command", required=True)

    create = subcommand(sub, "create", "create a team")
    create.add_argument("name")
    _add_team_settings(create)

    subcommand(sub, "list", "list teams (config file and database)")

    show = subcommand(sub, "show", "one team and its keys")
    show.add_argument("name")

    update = subcommand(sub, "update", "change a team's settings")
    update.add_argument("name")
    _add_team_settings(update)


def _add_team_settings(parser: argparse.ArgumentParser) -> None:
    add_settings(parser)
    parser.add_argument("--upstream-key", action="append", default=[], metavar="UPSTREAM=ENV",
                        help="the team's own key for an upstream: the NAME of the gateway's "
                             "environment variable holding it (repeatable)")
    parser.add_argument("--project", action="append", default=[], metavar="UPSTREAM=PROJECT",
                        help="the team's OpenAI project for an upstream (repeatable)")
    parser.add_argument("--organization", action="append", default=[], metavar="UPSTREAM=ORG",
                        help="the team's OpenAI organization for an upstream (repeatable)")
    parser.add_argument("--coalesce", choices=("deterministic", "all", "off"),
                        help="the team's request grouping override")
    parser.add_argument("--shared-cache", action=argparse.BooleanOptionalAction, default=None,
                        help="let cached answers cross to and from other teams")


def main(args: argparse.Namespace) -> int:
    return run(args.config, lambda stores: _ACTIONS[args.teams_command](stores, args))


async def _create(stores: Stores, args: argparse.Namespace) -> int:
    record = await stores.teams.create({"name": args.name, **await _fields(stores, args)})
    _print_team(record.to_json(), args.format)
    return 0


async def _list(stores: Stores, args: argparse.Namespace) -> int:
    teams = [r.to_json() for r in await stores.teams.list()]
    if args.format == "json":
        print_json({"object": "list", "data": teams})
        return 0
    print_table(None, ["name", "source", "keys", "models", "limits", "budget", "upstreams"],
                [[t["name"], t["source"], t.get("key_count"), ", ".join(t["models"]) or "all",
                  limits_text(t["limits"]), budget_text(t["budget"]),
                  ", ".join(t["upstreams"])] for t in teams])
    return 0


async def _show(stores: Stores, args: argparse.Namespace) -> int:
    team = (await stores.teams.get(args.name)).to_json()
    now = time.time()
    team["keys"] = [k.to_json(now)
                    for k in await stores.keys.list(team=args.name, include_inactive=True)]
    if args.format == "json":
        print_json(team)
        return 0
    keys = team.pop("keys")
    print_fields(f"team {team['name']}", team)
    print_table("keys", ["id", "name", "status", "key"],
                [[k["id"], k["name"], k["status"], k["redacted_key"]] for k in keys])
    return 0


async def _update(stores: Stores, args: argparse.Namespace) -> int:
    record = await stores.teams.update(args.name, await _fields(stores, args))
    _print_team(record.to_json(), args.format)
    return 0


_ACTIONS = {"create": _create, "list": _list, "show": _show, "update": _update}


async def _fields(stores: Stores, args: argparse.Namespace) -> dict[str, Any]:
    fields = settings_fields(args)
    upstreams = await _upstreams(stores, args)
    if upstreams is not None:
        fields["upstreams"] = upstreams
    if args.coalesce is not None or args.shared_cache is not None:
        fields["grouping"] = {"coalesce": args.coalesce,
                              "shared_cache": bool(args.shared_cache)}
    return fields


async def _upstreams(stores: Stores, args: argparse.Namespace) -> dict[str, Any] | None:
    """The team's upstream credentials after the flags (merged into what it has)."""
    given = {"api_key_env": args.upstream_key, "project": args.project,
             "organization": args.organization}
    if not any(given.values()):
        return None
    current: dict[str, dict[str, Any]] = {}
    if args.teams_command == "update":
        current = (await stores.teams.get(args.name)).to_json()["upstreams"]
    for field, pairs in given.items():
        for pair in pairs:
            upstream, sep, value = pair.partition("=")
            if not sep or not upstream or not value:
                raise SystemExit(f"llm-gateway: expected UPSTREAM=VALUE, got {pair!r}")
            current.setdefault(upstream, {})[field] = value
    return current


def _print_team(data: dict[str, Any], fmt: str) -> None:
    print_object(f"team {data['name']}", data, fmt)
