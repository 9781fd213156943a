"""Typed, frozen configuration objects; the YAML keys are the field names.

Per-field limits live in field metadata so the generic builder in ``loader.py`` can report
them with the field's path:

- ``ge`` / ``gt`` / ``le``: numeric bounds (skipped when the value is ``None``);
- ``check``: a function returning a problem message, or ``None`` when the value is fine;
- ``yaml=False``: not a YAML key (filled in by the loader).

Rules that span several fields (backend names, duplicate model names, worker counts, the
fallback model) live in the loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from llm_gateway.config.access import (
    AuthConfig,
    LimitsConfig,
    TeamConfig,
)
from llm_gateway.config.accounting import AccountingConfig, StorageConfig
from llm_gateway.config.checks import entra_id, env_var_name, header_name, http_url, non_empty
from llm_gateway.config.console import ConsoleConfig
from llm_gateway.config.endpoints import DEFAULT_ENDPOINTS, families_problem
from llm_gateway.config.grouping import GroupingConfig
from llm_gateway.config.placement import (  # re-exported: the schema's classes are all here
    GpuBudget as GpuBudget,
)
from llm_gateway.config.placement import ModelGroup as ModelGroup
from llm_gateway.config.placement import PlacementConfig
from llm_gateway.config.proxies import setting_problem
from llm_gateway.config.routes import CooldownConfig, ModelRoute
from llm_gateway.config.tracing import TracingConfig

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "text"]
Transport = Literal["aiohttp", "httpx"]
# The wire format an upstream speaks (docs/providers.md): OpenAI's (any OpenAI-compatible
# server), Azure OpenAI's URLs and keys over it, or Anthropic's Messages API.
UpstreamKind = Literal["openai", "azure", "anthropic"]

@dataclass(frozen=True)
class ServerConfig:
    # Loopback unless told otherwise: an address reachable from the network is a choice (see
    # config/safety.py for what else it then requires).
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata={"ge": 0, "le": 65535})  # 0 = any free port
    workers: int = field(default=1, metadata={"ge": 1})
    max_body_bytes: int = field(default=16 * 1024 * 1024, metadata={"gt": 0})
    max_upload_bytes: int = field(default=512 * 1024 * 1024, metadata={"gt": 0})
    # One SSE event from a backend (backends/sse.py says why 16 MiB); over it the stream ends
    # with an error event.
    max_sse_event_bytes: int = field(default=16 * 1024 * 1024, metadata={"gt": 0})
    # A backend's answer read whole (not streamed; backends/http_upstream.py says why 128 MiB);
    # a larger one is refused with a 502 (upstream_answer_too_large).
    max_answer_bytes: int = field(default=128 * 1024 * 1024, metadata={"gt": 0})
    # A client slower than these is dropped (408): the time from its first byte to the end of
    # a request's headers, the longest wait for the next piece of a body, and the body's
    # average rate past that first wait (Apache's mod_reqtimeout MinRate; 0 = none).
    header_timeout_seconds: float = field(default=10.0, metadata={"gt": 0})
    body_timeout_seconds: float = field(default=30.0, metadata={"gt": 0})
    body_min_bytes_per_second: float = field(default=500.0, metadata={"ge": 0})
    # Connections each process keeps open at most; past it a 503 and the connection closed.
    max_connections: int = field(default=10_000, metadata={"ge": 1})
    shutdown_grace_seconds: float = field(default=30.0, metadata={"ge": 0})
    log_level: LogLevel = "info"
    log_format: LogFormat = "json"  # one JSON object per line, or plain text
    log_bodies: bool = False  # prompts and completions in the request log (with log_level debug)
    access_log: bool = False  # uvicorn's own access log; the gateway logs requests itself


@dataclass(frozen=True)
class TimeoutConfig:
    connect: float = field(default=10.0, metadata={"gt": 0})
    read: float = field(default=600.0, metadata={"gt": 0})
    total: float | None = field(default=900.0, metadata={"gt": 0})  # None = no overall limit


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = field(default=2, metadata={"ge": 0})  # retries after the first try
    backoff_seconds: float = field(default=0.25, metadata={"ge": 0})
    max_backoff_seconds: float = field(default=4.0, metadata={"ge": 0})


@dataclass(frozen=True)
class EntraConfig:
    """azure: the Entra ID identity the gateway gets its bearer tokens as (backends/entra.py):
    an app with a client secret or a workload identity's federated token file, or the
    machine's managed identity; kept fresh as they expire."""

    # The app's directory and id; a managed identity needs neither (client_id: a
    # user-assigned identity's, else the system-assigned one).
    tenant_id: str | None = field(default=None, metadata={"check": entra_id})
    client_id: str | None = field(default=None, metadata={"check": entra_id})
    client_secret_env: str | None = field(default=None, metadata={"check": env_var_name})
    federated_token_file: str | None = field(default=None, metadata={"check": non_empty})
    managed_identity: bool = False
    authority: str = field(default="https://login.microsoftonline.com",
                           metadata={"check": http_url})
    # Where a managed identity's tokens come from: the instance metadata service.
    identity_endpoint: str = field(
        default="http://169.254.169.254/metadata/identity/oauth2/token",
        metadata={"check": http_url})
    scope: str = field(default="https://cognitiveservices.azure.com/.default",
                       metadata={"check": non_empty})
    # A new token is fetched this long before the one in use expires (at half its lifetime
    # at the latest), in the background: requests never wait for a refresh.
    refresh_before_seconds: float = field(default=300.0, metadata={"ge": 0})
    timeout_seconds: float = field(default=10.0, metadata={"gt": 0})  # one token request


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str = field(metadata={"check": http_url})
    kind: UpstreamKind = "openai"
    api_key_env: str | None = field(default=None, metadata={"check": env_var_name})
    # azure: an Entra ID bearer token from this variable instead of an api-key.
    auth_token_env: str | None = field(default=None, metadata={"check": env_var_name})
    # azure: tokens fetched from Entra ID and refreshed before they expire.
    entra: EntraConfig | None = None
    # azure: the api-version query parameter; None: Azure's /openai/v1/ URLs (no version).
    api_version: str | None = field(default=None, metadata={"check": non_empty})
    # azure: our model name (what routing sends) -> its deployment name; unlisted names are
    # their own deployment names.
    azure_deployments: dict[str, str] = field(default_factory=dict)
    # anthropic: the anthropic-version header; None: 2023-06-01.
    anthropic_version: str | None = field(default=None, metadata={"check": non_empty})
    # anthropic: max_tokens for a request that sets none (Anthropic requires it); None: 4096.
    default_max_tokens: int | None = field(default=None, metadata={"ge": 1})
    organization: str | None = None
    project: str | None = None
    # repr=False: static headers often carry credentials, and configs end up in logs.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    # The header carrying the gateway's request id upstream; None: none is added (some servers
    # reject ids they did not expect, e.g. llama-cpp-python's wants a UUID in x-request-id).
    request_id_header: str | None = field(default=None, metadata={"check": header_name})
    transport: Transport = "aiohttp"
    # Through which proxy: env (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY, as curl and
    # the OpenAI SDK read them), none (direct), or http://[user:password@]host:port; see
    # config/proxies.py. repr=False: it may hold a password.
    proxy: str = field(default="env", repr=False, metadata={"check": setting_problem})
    # TLS: the CAs (a PEM file) its certificate is verified against; None: SSL_CERT_FILE or
    # SSL_CERT_DIR when set, else certifi's bundle. A client certificate (PEM, with its key in
    # client_key or in the same file) for upstreams that want mutual TLS.
    ca_file: str | None = field(default=None, metadata={"check": non_empty})
    client_cert: str | None = field(default=None, metadata={"check": non_empty})
    client_key: str | None = field(default=None, metadata={"check": non_empty})
    max_connections: int = field(default=512, metadata={"ge": 1})
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    retries: RetryConfig = field(default_factory=RetryConfig)
    list_models: bool = True  # merge this upstream's /models into GET /v1/models
    models_ttl_seconds: float = field(default=300.0, metadata={"ge": 0})
    # Whether it serves POST /v1/responses itself (openai, azure); false: the gateway turns
    # Responses calls into chat completions for it (llama-server, older vLLM) and keeps their
    # state itself. An anthropic upstream never does.
    responses_api: bool = True
    name: str = field(default="", metadata={"yaml": False})  # the key under `upstreams`

    def __post_init__(self) -> None:
        # Callers join paths as base_url + "/chat/completions"; a trailing slash would double up.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def api_key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The key from the environment variable named by ``api_key_env``; None if unset/empty."""
        if not self.api_key_env:
            return None
        return (os.environ if env is None else env).get(self.api_key_env) or None


def _model_source(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if value.startswith("hf://"):
        parts = value[len("hf://"):].split("/")
        if len(parts) < 3 or not all(parts):
            return "an hf:// source must be hf://owner/repo/file.gguf"
    return None


DNS_SCHEME = "dns://"
DEFAULT_WORKER_PORT = 8090  # `llm-gateway worker`'s port in its images


def parse_discovery(value: str) -> tuple[str, int]:
    """``dns://name[:port]`` -> (name, port); ValueError saying what is wrong."""
    if not value.startswith(DNS_SCHEME):
        raise ValueError(f"must be {DNS_SCHEME}name[:port] (e.g. dns://llm-worker:8090)")
    parts = urlsplit("//" + value[len(DNS_SCHEME):])
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("has no host name")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"must be {DNS_SCHEME}name[:port], nothing more")
    return parts.hostname, DEFAULT_WORKER_PORT if port is None else port


def _discovery(value: str) -> str | None:
    try:
        parse_discovery(value)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class LocalConfig:
    """A named set of llama.cpp workers serving one model (`llm-gateway worker` processes).

    Either the gateway spawns ``workers`` children (one per entry of ``gpus`` when given), or
    ``urls`` names workers someone else runs, or ``discovery`` names a DNS name whose addresses
    are the workers (a Kubernetes headless Service); in the last two cases nothing is spawned.
    The llama.cpp options only apply to spawned workers.
    """

    model: str = field(metadata={"check": _model_source})  # path | hf://o/r/f.gguf | default
    # None: 1, or one per GPU. Not allowed with `urls` (those workers are counted by the list).
    workers: int | None = field(default=None, metadata={"ge": 1})
    urls: list[str] = field(default_factory=list)  # external workers: nothing is spawned
    # External workers found by DNS, dns://name[:port]: one per address, re-resolved every
    # discovery_interval_seconds (see backends/discovery.py). Not with urls/workers/gpus.
    discovery: str | None = field(default=None, metadata={"check": _discovery})
    discovery_interval_seconds: float = field(default=5.0, metadata={"gt": 0})
    gpus: list[int] = field(default_factory=list)  # one worker per id, CUDA_VISIBLE_DEVICES=id
    n_gpu_layers: int = field(default=0, metadata={"ge": -1})  # -1 = every layer
    n_ctx: int = field(default=4096, metadata={"ge": 0})  # 0 = the model's own context size
    n_batch: int = field(default=512, metadata={"ge": 1})
    n_threads: int | None = field(default=None, metadata={"ge": 1})  # None = the worker decides
    # auto: wherever the device supports it (llama.cpp's default); true/false: on/off
    flash_attn: Literal["auto", True, False] = "auto"
    chat_format: str | None = field(default=None, metadata={"check": non_empty})
    chat_template: str | None = field(default=None, metadata={"check": non_empty})  # a file
    # the model's tool-call syntax; auto: read from the chat template (worker --tool-format)
    tool_format: Literal["auto", "hermes", "llama3", "mistral"] = "auto"
    lora: str | None = field(default=None, metadata={"check": non_empty})
    # /v1/embeddings from a second context on the same weights, beside chat (was `embedding`)
    embeddings: bool = field(default=True, metadata={"was": "embedding"})
    max_queue: int = field(default=16, metadata={"ge": 1})  # per worker; beyond it: 429
    host: str = "127.0.0.1"  # where spawned workers listen
    base_port: int | None = field(default=None, metadata={"ge": 1, "le": 65535})  # None = free
    fallback: str | None = field(default=None, metadata={"check": non_empty})  # a model name
    health_interval_seconds: float = field(default=2.0, metadata={"gt": 0})
    restart_backoff_seconds: float = field(default=1.0, metadata={"ge": 0})
    max_restart_backoff_seconds: float = field(default=30.0, metadata={"ge": 0})
    startup_timeout_seconds: float = field(default=120.0, metadata={"gt": 0})
    # batching: many sequences decoded together (`parallel` of them); simple: one at a time.
    engine: Literal["batching", "simple"] = "batching"
    parallel: int = field(default=8, metadata={"ge": 1})  # sequences decoded together
    # batching: ids keeping finished sequences' prefixes besides the running ones, n_ctx cells
    # each (worker --cache-slots); None: 0 (finished ones stay cached on idle running ids)
    cache_slots: int | None = field(default=None, metadata={"ge": 0})
    # batching: sampler chains run inside the decode (worker --backend-sampling)
    backend_sampling: bool = False
    # a short decode at load, before the worker reports ready (worker --no-warmup when off)
    warmup: bool = True
    affinity: bool = True  # send requests sharing a conversation prefix to the same worker
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    # resident: workers start with the gateway and stay. on_demand: they start at the first
    # request (which waits, with at most max_waiting others, up to load_timeout_seconds) and
    # stop after idle_unload_seconds without requests (None: never), or when another model
    # needs the memory; pinned: never stopped once loaded (backends/residency.py).
    load: Literal["resident", "on_demand"] = "resident"
    idle_unload_seconds: float | None = field(default=None, metadata={"gt": 0})
    load_timeout_seconds: float = field(default=120.0, metadata={"gt": 0})
    max_waiting: int = field(default=64, metadata={"ge": 0})
    pinned: bool = False
    # MiB one worker needs on its device (its GPU when n_gpu_layers is not 0, else host
    # memory), instead of the estimate from the GGUF file (backends/memory.py).
    memory_mib: int | None = field(default=None, metadata={"ge": 1})
    name: str = field(default="", metadata={"yaml": False})  # the key under `local`

    @property
    def spawns(self) -> bool:
        """Whether the gateway runs these workers itself (no `urls`, no `discovery`)."""
        return not self.urls and self.discovery is None

    @property
    def worker_count(self) -> int:
        """Workers known at start; discovered ones are added as DNS finds them."""
        if self.discovery is not None:
            return 0
        if self.urls:
            return len(self.urls)
        if self.gpus:
            return len(self.gpus)
        return self.workers or 1


PASSTHROUGH_OFF = "off"  # routing.passthrough_backend: off -> other /v1/* paths are a 404


@dataclass(frozen=True)
class RoutingConfig:
    default_backend: str | None = None  # unknown model names go here; None -> 404
    cooldown: CooldownConfig = field(default_factory=CooldownConfig)  # failing deployments
    # Other /v1/* paths (an upstream); None -> see Config; "off" -> none relayed (404).
    passthrough_backend: str | None = None
    # The endpoint families relayed (config/endpoints.py says why this default); teams and
    # keys may narrow it, never widen it.
    passthrough_endpoints: list[str] = field(
        default_factory=lambda: list(DEFAULT_ENDPOINTS), metadata={"check": families_problem})


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True  # GET /metrics and the per-request recording behind it
    # Where uvicorn worker processes (server.workers > 1) share their metrics; emptied at
    # start. None: a fresh temporary directory.
    multiprocess_dir: str | None = field(default=None, metadata={"check": non_empty})


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict)
    local: dict[str, LocalConfig] = field(default_factory=dict)
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # local models' memory
    models: list[ModelRoute] = field(default_factory=list)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    teams: dict[str, TeamConfig] = field(default_factory=dict)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)  # the web console, /ui/
    tracing: TracingConfig = field(default_factory=TracingConfig)  # OpenTelemetry spans
    source: str = field(default="<config>", metadata={"yaml": False})  # for messages

    @property
    def passthrough_upstream(self) -> UpstreamConfig | None:
        """Where non-model /v1/* paths go: the configured one, else "openai", else the first."""
        name = self.routing.passthrough_backend
        if name == PASSTHROUGH_OFF:
            return None
        if name is None:  # only an OpenAI-shaped upstream can take any /v1/* path
            shaped = [n for n, u in self.upstreams.items() if u.kind == "openai"]
            name = "openai" if "openai" in shaped else next(iter(shaped), None)
        return None if name is None else self.upstreams.get(name)
