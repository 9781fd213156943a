"""The app's one `State`: built at startup from the config, closed at shutdown."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_gateway.accounting.accountant import Accountant
from llm_gateway.api.passthrough_policy import Policy
from llm_gateway.api.responses_chat.store import Conversations
from llm_gateway.auth.authenticate import Authenticator
from llm_gateway.auth.ownership import Owners
from llm_gateway.backends.base import Backend
from llm_gateway.backends.build import upstream_backend
from llm_gateway.backends.local import LocalBackend
from llm_gateway.backends.residency import Residency
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import Config
from llm_gateway.grouping.layer import Grouper
from llm_gateway.limits.gate import Gate
from llm_gateway.metrics.exposition import Exposition
from llm_gateway.metrics.recorder import Recorder
from llm_gateway.routing.catalog import ModelCatalog
from llm_gateway.routing.router import Router
from llm_gateway.storage.connect import open_database
from llm_gateway.tracing.base import NO_TRACER, Tracer
from llm_gateway.tracing.build import build_tracer
from llm_gateway.web.validation import Validator, compile_request_validators


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


@dataclass
class State:
    config: Config
    backends: dict[str, Backend]
    router: Router
    catalog: ModelCatalog
    validators: dict[str, Validator]
    streaming_operations: frozenset[str]
    passthrough: UpstreamBackend | None
    passthrough_policy: Policy  # which passthrough families are relayed (or none: off)
    # The request path's layers, in order: auth -> limits -> grouping -> (routing, backends)
    # -> accounting.
    auth: Authenticator
    gate: Gate
    grouper: Grouper
    accountant: Accountant
    owners: Owners  # who created which stored response, file, batch... (auth/ownership.py)
    # The responses the gateway answered through chat completions and keeps itself.
    conversations: Conversations
    request_ids: Callable[[], str] = new_request_id
    recorder: Recorder | None = None  # per-request metrics and log lines
    exposition: Exposition | None = None  # GET /metrics; None when metrics are off
    residency: Residency | None = None  # which local models are loaded; None: none spawned
    tracer: Tracer = NO_TRACER  # request spans (tracing.enabled), exported over OTLP

    @classmethod
    def build(cls, config: Config, spec: dict, env: Mapping[str, str] | None = None) -> State:
        env = os.environ if env is None else env
        server = config.server
        backends: dict[str, Backend] = {
            name: upstream_backend(cfg, env, max_event_bytes=server.max_sse_event_bytes,
                                   max_answer_bytes=server.max_answer_bytes)
            for name, cfg in config.upstreams.items()
        }
        # Nothing is spawned yet: that waits for start(), on the event loop that will own it.
        # Spawned workers are loaded and unloaded by one Residency (memory, on-demand loads).
        spawned = any(cfg.spawns for cfg in config.local.values())
        residency = Residency(config.placement) if spawned else None
        backends.update({
            name: LocalBackend(cfg, max_event_bytes=server.max_sse_event_bytes,
                               max_answer_bytes=server.max_answer_bytes,
                               residency=residency if cfg.spawns else None,
                               worker_args=_worker_args(config))
            for name, cfg in config.local.items()})
        router = Router(config, backends)
        upstream = config.passthrough_upstream
        passthrough = backends.get(upstream.name) if upstream else None
        catalog = ModelCatalog(router, backends)
        recorder = Recorder.build(config, router.routes_exactly(), catalog)
        if recorder.metrics is not None:
            router.watch(recorder.metrics)
            if residency is not None:
                residency.watch(recorder.metrics.local_models)
        accountant = Accountant(config, env, backends, metrics=recorder.metrics)
        accountant.on_record = recorder.account
        return cls(
            config=config,
            backends=backends,
            router=router,
            catalog=catalog,
            validators=compile_request_validators(spec),
            streaming_operations=_streaming_operations(spec),
            passthrough=passthrough if isinstance(passthrough, UpstreamBackend) else None,
            passthrough_policy=Policy(config),
            auth=Authenticator(config, env),
            gate=Gate(config, env, metrics=recorder.metrics),
            grouper=Grouper(config, env, metrics=recorder.metrics),
            accountant=accountant,
            owners=Owners(config),
            conversations=Conversations(retention_seconds=_retention(config)),
            recorder=recorder,
            exposition=Exposition(recorder.metrics) if recorder.metrics else None,
            residency=residency,
            tracer=build_tracer(config.tracing, env),
        )

    db: Any = None  # storage.Database, opened at start when keys or the ledger need it

    async def start(self) -> None:
        """Open the database, start the layers' background work, local workers and their
        health checks."""
        self.db = await open_database(self.config)
        await self.auth.start(self.db)
        await self.owners.start(self.db)
        await self.conversations.start(self.db)
        await self.accountant.start(self.db)
        await self.gate.start(self.accountant.ledger)
        await self.grouper.start()
        if self.residency is not None:
            await self.residency.start()  # the models' sizes first: resident ones are booked
        for backend in self.backends.values():
            await backend.start()

    async def aclose(self) -> None:
        if self.residency is not None:
            await self.residency.aclose()  # no load or unload starts past this
        for backend in self.backends.values():
            await backend.aclose()
        # After the backends: every stream is over, so every usage record is in.
        await self.grouper.aclose()
        await self.accountant.aclose()
        await self.gate.aclose()
        await self.auth.aclose()
        await self.conversations.aclose()
        if self.db is not None:
            await self.db.aclose()
        if self.recorder is not None:
            self.recorder.flush()
        if self.exposition is not None:
            self.exposition.close()
        if self.tracer.enabled:  # after the backends: every span has ended; exporting blocks
            await asyncio.to_thread(self.tracer.shutdown)


def _streaming_operations(spec: dict) -> frozenset[str]:
    ops = set()
    for item in (spec.get("paths") or {}).values():
        for op in item.values():
            if isinstance(op, dict) and op.get("x-lgw-streaming"):
                ops.add(op["operationId"])
    return frozenset(ops)


def _worker_args(config: Config) -> tuple[str, ...]:
    """More flags for spawned workers: the gateway's client bounds (a body it took, the worker
    takes too) and tracing's --otlp-*."""
    server = config.server
    return ("--max-body-bytes", str(server.max_body_bytes),
            "--header-timeout-seconds", str(server.header_timeout_seconds),
            "--body-timeout-seconds", str(server.body_timeout_seconds),
            "--body-min-bytes-per-second", str(server.body_min_bytes_per_second),
            *config.tracing.worker_args())


def _retention(config: Config) -> float | None:
    days = config.storage.responses_retention_days
    return None if days is None else days * 86400
