"""GET /healthz (alive) and GET /readyz (able to serve every configured model).

Readiness, per configured model route: its backend is healthy, i.e. a local backend has at
least one healthy worker and an upstream's recent calls have not all failed
(`backends.health.RecentFailures`); a local backend with no healthy worker still counts as
ready when its fallback model's backend is.

The database and the ledger make the replica unready only for faults of its own that no
waiting cures: its SQLite file deleted or replaced (keys and records would go to a file
nobody can see), the ledger writer stopped, records that cannot be spooled. A database that
is down or read-only is reported but leaves the replica ready: records queue on disk until it
is back, and with a shared PostgreSQL every replica would be drained at once, stopping all
traffic for what is only a delay in accounting.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request

from llm_gateway.api.context import context
from llm_gateway.api.state import State
from llm_gateway.config import ModelRoute
from llm_gateway.errors import ModelNotFound
from llm_gateway.storage.database import Database
from llm_gateway.web.responses import BytesResponse

OK = "ok"
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_ALIVE = orjson.dumps({"status": "ok"})


async def get_healthz(request: Request) -> BytesResponse:
    return BytesResponse(200, _ALIVE, list(_JSON))


async def get_readyz(request: Request) -> BytesResponse:
    ready, checks = await readiness(context(request.scope).state)
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return BytesResponse(200 if ready else 503, orjson.dumps(body), list(_JSON))


async def readiness(state: State) -> tuple[bool, dict]:
    models = {rule.name: _rule_check(state, rule) for rule in state.config.models}
    ledger = state.accountant.ledger
    database, lost = await _database_check(state.db)
    checks: dict = {"config": OK, "database": database,
                    "ledger": ledger.health() if ledger is not None else "not configured",
                    "models": models}
    default = state.config.routing.default_backend
    if default is not None:
        checks["default_backend"] = _route_check(state, default)
    ready = (all(v == OK for v in models.values()) and checks.get("default_backend", OK) == OK
             and not lost and (ledger is None or ledger.problem() is None))
    return ready, checks


async def _database_check(db: Database | None) -> tuple[str, bool]:
    """The database's state, and whether it is lost for good (a SQLite file deleted or
    replaced: a stat, no query). A PostgreSQL is asked a trivial query, capped at 1 s."""
    if db is None:
        return "not configured", False
    problem = await db.check()
    if problem is None:
        return OK, False
    return problem, db.dialect == "sqlite"


def _rule_check(state: State, rule: ModelRoute) -> str:
    """A route is ready when one of its deployments is."""
    checks = [_route_check(state, d.backend) for d in rule.deployment_list()]
    return OK if OK in checks else checks[0]


def _route_check(state: State, name: str) -> str:
    backend = state.backends[name]
    problem = backend.problem()
    if problem is None:
        return OK
    if backend.fallback is not None:
        try:
            spill = state.router.resolve(backend.fallback).backend
        except ModelNotFound:
            return problem
        if spill.name != backend.name and spill.problem() is None:
            return OK  # its calls spill over to the fallback model, which can take them
    return problem
