"""`llm-gateway keys create|list|show|update|revoke|rotate|disable|enable`.

Works on the database the config names, through the same KeyStore as POST /admin/keys. A
running gateway sees changes within its auth.cache_seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from llm_gateway.auth.times import iso
from llm_gateway.cli.admin_stores import (
    Stores,
    add_settings,
    print_fields,
    print_json,
    print_object,
    print_table,
    run,
    settings_fields,
    subcommand,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True)

    create = subcommand(sub, "create", "create a key (shown once)")
    create.add_argument("--name", required=True, help="what the key is for, or whose it is")
    create.add_argument("--team", help="the key's team (declared in the config or created)")
    _add_key_settings(create)

    listing = subcommand(sub, "list", "list keys")
    listing.add_argument("--team", help="only this team's keys")
    listing.add_argument("--all", action="store_true",
                         help="also disabled, expired and revoked keys")

    show = subcommand(sub, "show", "one key's settings")
    show.add_argument("key_id")

    update = subcommand(sub, "update", "change a key's settings")
    update.add_argument("key_id")
    update.add_argument("--name")
    update.add_argument("--team")
    _add_key_settings(update)

    for name, text in (("revoke", "revoke a key for good"),
                       ("rotate", "a new secret for a key (shown once); the old one stops"),
                       ("disable", "disable a key (enable undoes it)"),
                       ("enable", "enable a disabled key")):
        subcommand(sub, name, text).add_argument("key_id")


def _add_key_settings(parser: argparse.ArgumentParser) -> None:
    add_settings(parser)
    parser.add_argument("--expires", metavar="WHEN",
                        help="expiry: a duration (30d, 12h), a date (2026-12-31) or a time")


def main(args: argparse.Namespace) -> int:
    return run(args.config, lambda stores: _ACTIONS[args.keys_command](stores, args))


async def _create(stores: Stores, args: argparse.Namespace) -> int:
    fields = _fields(args)
    record, key = await stores.keys.create(fields)
    _print_secret(record.to_json(time.time()), key, args.format, "created")
    return 0


async def _list(stores: Stores, args: argparse.Namespace) -> int:
    records = await stores.keys.list(team=args.team, include_inactive=args.all)
    now = time.time()
    keys = [r.to_json(now) for r in records]
    if args.format == "json":
        print_json({"object": "list", "data": keys})
        return 0
    # What tells keys apart; limits and budget are in `keys show` (80 columns hold no more).
    print_table(None, ["id", "name", "team", "status", "key", "models", "expires"],
                [[k["id"], k["name"], k["team"], k["status"], k["redacted_key"][-7:],
                  ", ".join(k["models"]) or "all", _date(k["expires_at"])] for k in keys])
    return 0


async def _show(stores: Stores, args: argparse.Namespace) -> int:
    _print_key(await stores.keys.get(args.key_id), args.format)
    return 0


async def _update(stores: Stores, args: argparse.Namespace) -> int:
    _print_key(await stores.keys.update(args.key_id, _fields(args)), args.format)
    return 0


async def _revoke(stores: Stores, args: argparse.Namespace) -> int:
    _print_key(await stores.keys.revoke(args.key_id), args.format)
    return 0


async def _rotate(stores: Stores, args: argparse.Namespace) -> int:
    record, key = await stores.keys.rotate(args.key_id)
    _print_secret(record.to_json(time.time()), key, args.format, "rotated")
    return 0


async def _disable(stores: Stores, args: argparse.Namespace) -> int:
    _print_key(await stores.keys.update(args.key_id, {"disabled": True}), args.format)
    return 0


async def _enable(stores: Stores, args: argparse.Namespace) -> int:
    _print_key(await stores.keys.update(args.key_id, {"disabled": False}), args.format)
    return 0


_ACTIONS = {"create": _create, "list": _list, "show": _show, "update": _update,
            "revoke": _revoke, "rotate": _rotate, "disable": _disable, "enable": _enable}


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = settings_fields(args)
    for name in ("name", "team"):
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    if args.expires is not None:
        fields["expires_at"] = args.expires
    return fields


def _print_key(record: Any, fmt: str) -> None:
    data = record.to_json(time.time())
    print_object(f"key {data['id']}", data, fmt)


def _print_secret(data: dict[str, Any], key: str, fmt: str, what: str) -> None:
    if fmt == "json":
        print_json({**data, "key": key})
        return
    print_fields(f"key {data['id']} {what}", data)
    print("The key is shown this once; store it now (only a keyed hash of it is kept):",
          file=sys.stderr)
    print(key)


def _date(epoch: int | None) -> str:
    return (iso(epoch) or "")[:10]  # the day is enough in a list
