"""Building the ASGI app from a config."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Mapping

from llm_gateway.api.state import State
from llm_gateway.app.connexion_app import Operation, build_connexion_app
from llm_gateway.app.edge import Edge
from llm_gateway.app.logs import configure_logging
from llm_gateway.app.resolver import HANDLERS
from llm_gateway.config import Config, load_config
from llm_gateway.console import Console
from llm_gateway.web.spec import PathTable, load_spec

log = logging.getLogger(__name__)

YOUNG_GC_THRESHOLD = 10_000  # see settle_heap


def create_app(config: Config | None = None, env: Mapping[str, str] | None = None) -> Edge:
    env = os.environ if env is None else env
    config = config or load_config(env=env)
    spec = load_spec("openai.yaml")
    ops = load_spec("gateway.yaml")  # /healthz, /readyz, /metrics
    state = State.build(config, spec, env)
    console: Console | None = None  # made below, once the edge it sends sub-requests to is

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            await state.start()
            if console is not None:
                await console.start()  # its sessions go where the state's database is
            log.info("llm-gateway ready: %d upstreams, %d local backends, %d model routes",
                     len(config.upstreams), len(config.local), len(config.models))
            yield
        finally:
            await state.aclose()

    inner = build_connexion_app([spec, ops], HANDLERS, lifespan=lifespan)
    operations = {op_id: Operation(fn, op_id) for op_id, fn in HANDLERS.items()}
    edge = Edge(inner, state, PathTable(spec, ops), operations)
    if config.console.enabled:
        edge.console = console = Console(state, edge)
    return edge


def settle_heap() -> None:
    """Exempt what start-up built from garbage collection (call once the app is built).

    The parsed OpenAPI documents, the routes and the imported modules are hundreds of
    thousands of objects that live as long as the process; every full collection walked all
    of them, about a tenth of a busy gateway's CPU. Frozen, the collector walks only what
    requests make. (Not in create_app: tests build many apps in one process.)

    The young generation's threshold goes from 700 to 10,000 container allocations: a busy
    gateway holds a few thousand young containers across its concurrent requests, most of
    which die by reference counting, so at 700 the collector ran every few requests to find
    almost nothing (about 4% of the CPU under load).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)


def app_from_env() -> Edge:
    """Factory for `uvicorn --factory` and multi-worker serving: the config path is in the env.

    Each worker process is a fresh interpreter, so it sets up its own logging here.
    """
    config = load_config()
    configure_logging(config.server)
    app = create_app(config)
    settle_heap()
    return app
