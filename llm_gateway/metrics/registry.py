"""The gateway's metrics and their labels. The names are a contract: dashboards and alerts
(k8s/grafana, k8s/prometheus) and docs/metrics.md's table use them.

Label values are bounded: `team` and `model` only take configured values (else ``other``),
`backend` is a configured backend name, `status` and `code` come from small fixed sets; no
key, user or request id ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llm_gateway.errors import GatewayError
from llm_gateway.metrics.local_models import LocalModelMetrics

NONE = "none"  # no such thing for this request: no model (passthrough), no team (no auth yet)
OTHER = "other"  # a value that is not configured, folded into one label value

# Whole requests: from milliseconds (embeddings, errors) to minutes (long generations).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The gateway's own time: tens of microseconds to a few milliseconds when healthy.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

# Backend answers that are the backend's (or our key's) problem rather than the client's:
# counted in llm_gateway_backend_errors_total, with every 5xx.
ERROR_STATUSES = frozenset({401, 403, 429})


def backend_error_status(status: int) -> bool:
    return status >= 500 or status in ERROR_STATUSES


def backend_error_code(error: GatewayError) -> str | None:
    """A raised error's `code` label in llm_gateway_backend_errors_total; None: not the
    backend's failure (a 4xx is the request's own)."""
    return error.code or str(error.status) if error.status >= 500 else None


class GatewayMetrics:
    """Every gateway metric, in a registry of its own (one per app: tests run several).

    The request path does not touch these: it adds to a `metrics.tally.Tally`, which applies
    its sums here in batches.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "llm_gateway_requests", "Requests answered, by model, backend, team and HTTP status.",
            ["model", "backend", "team", "status"], registry=r)
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds",
            "Time from a request's arrival to its last byte sent (streams included).",
            ["model", "backend"], buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram(
            "llm_gateway_time_to_first_token_seconds",
            "Streams: time from a request's arrival to the first content-bearing event sent.",
            ["model", "backend"], buckets=TTFT_BUCKETS, registry=r)
        self.overhead = Histogram(
            "llm_gateway_overhead_seconds",
            "Time spent in the gateway itself: arrival to backend call, plus backend answer "
            "to our response start.", buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter(
            "llm_gateway_tokens", "Tokens the backends reported, by kind: prompt, completion, "
            "cached (prompt tokens served from a prompt cache).",
            ["model", "team", "kind"], registry=r)
        self.cost = Counter(
            "llm_gateway_cost_usd", "Cost of the requests in US dollars (from configured prices).",
            ["model", "team"], registry=r)
        self.grouped = Counter(
            "llm_gateway_grouped_requests",
            "Requests answered without a backend call of their own: coalesced or cache_hit.",
            ["kind"], registry=r)
        self.tokens_saved = Counter(
            "llm_gateway_tokens_saved", "Tokens not generated thanks to grouping.",
            ["team"], registry=r)
        self.backend_errors = Counter(
            "llm_gateway_backend_errors",
            "Failed backend calls: an answer's HTTP status (5xx, 429, 401, 403), or the "
            "failure (upstream_unavailable, upstream_timeout, service_unavailable, "
            "stream_error).", ["backend", "code"], registry=r)
        self.inflight = Gauge(
            "llm_gateway_inflight_requests", "Requests a backend is working on right now.",
            ["backend"], multiprocess_mode="livesum", registry=r)
        self.ratelimited = Counter(
            "llm_gateway_ratelimited", "Requests refused by a rate limit, by limit (rpm, tpm), "
            "or because a budget was used up (budget).",
            ["team", "limit"], registry=r)
        self.budget_remaining = Gauge(
            "llm_gateway_budget_remaining", "What is left of a team's budget, by unit.",
            ["team", "unit"], multiprocess_mode="livemostrecent", registry=r)
        self.limits_degraded = Counter(
            "llm_gateway_limits_degraded", "Calls whose rate limits and budgets were counted "
            "by this replica alone because Redis could not be reached.", registry=r)
        self.ledger_queue_depth = Gauge(
            "llm_gateway_ledger_queue_depth", "Usage records waiting to be written to the ledger.",
            multiprocess_mode="livesum", registry=r)
        self.ledger_dropped = Counter(
            "llm_gateway_ledger_dropped", "Usage records that could not be kept: not "
            "spooled to disk, or unreadable when the spool was replayed.", registry=r)
        self.deployment_retries = Counter(
            "llm_gateway_deployment_retries", "Calls that left a deployment of a route for "
            "the next one, by the failure (rate_limit, error).",
            ["model", "deployment", "reason"], registry=r)
        self.fallbacks = Counter(
            "llm_gateway_fallbacks", "Calls that went to a fallback model, by reason "
            "(error, rate_limit, context_window, content_policy).",
            ["model", "fallback", "reason"], registry=r)
        self.deployment_state = Gauge(
            "llm_gateway_deployment_state", "A deployment's health: 0 healthy, 1 cooling "
            "down, 2 half-open (one probe call out).", ["model", "deployment"],
            multiprocess_mode="livemostrecent", registry=r)
        self.slow_clients = Counter(
            "llm_gateway_slow_clients", "Connections dropped because the client sent a "
            "request's headers (headers) or the next piece of its body (body) too slowly.",
            ["phase"], registry=r)
        self.refused_connections = Counter(
            "llm_gateway_refused_connections", "Connections answered 503 and closed at once "
            "because the process had server.max_connections open.", registry=r)
        self.local_models = LocalModelMetrics(r)  # residency of local models (on demand)


class Bounded:
    """A label value: the value itself when it is one of ``known``, else ``other``."""

    __slots__ = ("known",)

    def __init__(self, known: Iterable[str]) -> None:
        self.known = frozenset(known)

    def __call__(self, value: str | None) -> str:
        if value is None:
            return NONE
        return value if value in self.known else OTHER


class Capped:
    """A label value kept as is for the first ``limit`` distinct values, then ``other``.

    For teams: they are created at run time (admin API), so they cannot be listed up front,
    but there are few of them; the cap only guards the metrics against a runaway.
    """

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return NONE
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


class Listing(Protocol):
    """What the model catalog (routing/catalog.py) shows the `model` label."""

    @property
    def listed(self) -> Collection[str]:
        """The names the backends' own model lists hold (the latest lists)."""
        ...


class ModelLabel:
    """The `model` label: an exact route name or alias, or a name a backend lists itself.

    A name that only a pattern matches cannot be enumerated from the config; it keeps its
    name when it is in the catalog's cached model lists (patterns are open-ended, lists are
    not), else it is ``other``. Two set lookups.
    """

    __slots__ = ("_catalog", "_exact")

    def __init__(self, exact: Iterable[str], catalog: Listing) -> None:
        self._exact: Collection[str] = frozenset(exact)
        self._catalog = catalog

    def __call__(self, model: str | None) -> str:
        if model is None:
            return NONE
        if model in self._exact or model in self._catalog.listed:
            return model
        return OTHER
