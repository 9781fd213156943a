"""`llm-gateway serve`: uvicorn in front of the app, with a bounded graceful shutdown."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import uvicorn

from llm_gateway.app.logs import configure_logging
from llm_gateway.cli.descriptors import make_room
from llm_gateway.config import ENV_PREFIX, ConfigError, load_config
from llm_gateway.config.safety import is_loopback
from llm_gateway.metrics.exposition import (
    MULTIPROC_ENV,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from llm_gateway.tracing.build import missing_extra

HOST_VAR = f"{ENV_PREFIX}SERVER__HOST"
WORKERS_VAR = f"{ENV_PREFIX}SERVER__WORKERS"
# httptools plus timeouts for slow clients, named by import path so that worker processes
# load it too.
HTTP_PROTOCOL = "llm_gateway.app.client_timeouts:HttpToolsClientTimeouts"


def serve(
    *,
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
) -> int:
    # The command line's choices go through the config's own checks (an open gateway on the
    # network, limits per process) as the env overrides they stand for; worker processes
    # inherit them, so each builds the same config.
    for name, value in ((HOST_VAR, host), (WORKERS_VAR, workers)):
        if value is not None:
            os.environ[name] = str(value)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"llm-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    missing = missing_extra(config.tracing)  # before anything starts, in every process mode
    if missing is not None:
        print(f"llm-gateway: {missing}", file=sys.stderr)
        return 2
    server = config.server
    configure_logging(server)
    make_room(server.max_connections)  # (worker processes inherit the limit)
    if config.auth.mode == "none" and not is_loopback(server.host):
        # Written on purpose (the config check refuses it otherwise), but worth a line.
        logging.getLogger(__name__).warning(
            "auth.mode is none on %s: anyone who reaches this port uses the gateway and its "
            "upstream keys", server.host)
    # uvicorn re-raises SIGTERM once it has drained; a drained shutdown is a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workers = server.workers
    spawned = [name for name, local in config.local.items() if local.spawns]
    if workers > 1 and spawned:
        # Each gateway process would spawn (and fight over) its own copy of every worker.
        print(f"llm-gateway: server.workers={workers} cannot share spawned local workers "
              f"({', '.join(f'local.{n}' for n in spawned)}); run them with "
              "`llm-gateway worker` and list them under `urls:`, or serve with one process",
              file=sys.stderr)
        return 2
    options: dict[str, Any] = dict(
        host=server.host,
        port=port if port is not None else server.port,
        lifespan="on",
        http=HTTP_PROTOCOL,
        loop="uvloop",
        access_log=server.access_log,
        server_header=False,
        log_level=server.log_level,
        # SIGTERM: stop accepting, let in-flight streams finish, but not forever.
        timeout_graceful_shutdown=server.shutdown_grace_seconds,
        backlog=2048,
    )
    if server.log_format == "json":
        options["log_config"] = None  # uvicorn's own records go through our JSON handler
    if workers > 1:
        # Each worker process builds its own app from the same config file.
        if config_path:
            os.environ["LLM_GATEWAY_CONFIG"] = os.path.abspath(config_path)
        folder, created = None, False
        if config.metrics.enabled:
            # Every process writes its metrics under one directory that any of them can sum
            # for a scrape; they inherit the variable before they import prometheus_client.
            folder, created = prepare_multiprocess_dir(config.metrics.multiprocess_dir)
            os.environ[MULTIPROC_ENV] = folder
        try:
            uvicorn.run("llm_gateway.app.factory:app_from_env", factory=True, workers=workers,
                        **options)
        finally:
            if created and folder is not None:
                remove_multiprocess_dir(folder)
    else:
        from llm_gateway.app.factory import create_app, settle_heap

        try:
            app = create_app(config)
        except ConfigError as exc:  # what only building the app finds (a TLS file unreadable)
            print(f"llm-gateway: invalid configuration:\n{exc}", file=sys.stderr)
            return 2
        settle_heap()
        uvicorn.run(app, **options)
    return 0
