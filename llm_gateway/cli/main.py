"""`llm-gateway` command line: serve, worker, config check."""

from __future__ import annotations

import argparse
import sys

from llm_gateway import __version__
from llm_gateway.cli.keys import add_arguments as keys_arguments
from llm_gateway.cli.models import add_arguments as models_arguments
from llm_gateway.cli.teams import add_arguments as teams_arguments
from llm_gateway.cli.usage import add_arguments as usage_arguments
from llm_gateway.cli.worker import add_arguments as worker_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config file (default: $LLM_GATEWAY_CONFIG)")
    serve.add_argument("--host", help="bind address (default: server.host)")
    serve.add_argument("--port", type=int, help="port (default: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")

    worker_arguments(sub.add_parser("worker", help="serve one local model (llama-cpp-python)"))

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and report every problem")
    check.add_argument("file")

    keys_arguments(sub.add_parser("keys", help="gateway keys: create, list, revoke, rotate..."))
    teams_arguments(sub.add_parser("teams", help="teams: create, list, show, update"))
    usage_arguments(sub.add_parser("usage", help="usage from the ledger, by team, key, "
                                   "model or day"))
    models_arguments(sub.add_parser("models", help="a running gateway's local models: "
                                    "loaded or not, memory, last use"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from llm_gateway.cli.serve import serve

        return serve(config_path=args.config, host=args.host, port=args.port,
                     workers=args.workers)
    if args.command == "worker":
        from llm_gateway.cli.worker import config_from_args, run_worker

        return run_worker(config_from_args(args))
    if args.command == "config":
        from llm_gateway.config import check_file

        ok, message = check_file(args.file)
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if args.command == "keys":
        from llm_gateway.cli.keys import main as keys_main

        return keys_main(args)
    if args.command == "teams":
        from llm_gateway.cli.teams import main as teams_main

        return teams_main(args)
    if args.command == "usage":
        from llm_gateway.cli.usage import main as usage_main

        return usage_main(args)
    if args.command == "models":
        from llm_gateway.cli.models import main as models_main

        return models_main(args)
    return 2
