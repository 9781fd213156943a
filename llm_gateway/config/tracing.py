"""OpenTelemetry traces (docs/tracing.md): off by default, the `otel` extra when on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from llm_gateway.config.checks import env_var_name, header_name, http_url, non_empty
from llm_gateway.config.proxies import setting_problem

TraceProtocol = Literal["http", "grpc"]
# Where an OTLP collector on this host listens by default, per protocol.
DEFAULT_ENDPOINTS: dict[str, str] = {
    "http": "http://127.0.0.1:4318/v1/traces",
    "grpc": "http://127.0.0.1:4317",
}


def _headers_env(value: dict[str, str]) -> str | None:
    """header name -> the NAME of the variable holding its value (a collector's token)."""
    for header, var in value.items():
        problem = header_name(header) if header.lower() != "authorization" else None
        if problem is not None:
            return f"{header!r}: {problem}"
        if env_var_name(var) is not None:
            return (f"{header!r}: the value must be the NAME of an environment variable "
                    "holding the header's value, not the value itself")
    return None


def export_proxy_problem(value: str) -> str | None:
    """env, none or a proxy URL, as an upstream's; without a password, which would reach
    spawned workers' command lines (a proxy that needs one: the environment's https_proxy)."""
    problem = setting_problem(value)
    if problem is None and value not in ("env", "none") and urlsplit(value).username:
        problem = ("must not hold a user or password (they would show in spawned workers' "
                   "command lines): set them in the environment's https_proxy / http_proxy "
                   "and use env")
    return problem


@dataclass(frozen=True)
class TracingConfig:
    enabled: bool = False
    # The OTLP receiver: for http the full URL (…/v1/traces), for grpc host:port as a URL.
    # None: the collector's default address on this host (DEFAULT_ENDPOINTS).
    endpoint: str | None = field(default=None, metadata={"check": http_url})
    protocol: TraceProtocol = "http"
    # Fraction of new traces kept; a client's traceparent decides for its own trace.
    sample_ratio: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    service_name: str = field(default="llm-gateway", metadata={"check": non_empty})
    # Export headers, each read from an environment variable (never written in the file).
    headers_env: dict[str, str] = field(default_factory=dict, metadata={"check": _headers_env},
                                        repr=False)
    # Prompts and completions as span events (gen_ai.*.message); off: only counts and names.
    record_content: bool = False
    # Spawned local workers export their own spans (queue wait, prompt evaluation, decode).
    workers: bool = True
    # The proxy exports go through, as an upstream's `proxy`: env (https_proxy / http_proxy /
    # all_proxy and no_proxy; loopback direct), none, or http://host:port.
    proxy: str = field(default="env", metadata={"check": export_proxy_problem})

    def export_endpoint(self) -> str:
        return self.endpoint or DEFAULT_ENDPOINTS[self.protocol]

    def worker_args(self) -> tuple[str, ...]:
        """`llm-gateway worker`'s --otlp-* flags for spawned workers (none when off)."""
        if not (self.enabled and self.workers):
            return ()
        args = ["--otlp-endpoint", self.export_endpoint(), "--otlp-protocol", self.protocol,
                "--otlp-service-name", f"{self.service_name}-worker"]
        for header, var in self.headers_env.items():  # names only: the child reads its env
            args += ["--otlp-header", f"{header}={var}"]
        if self.proxy != "env":  # (env: the child reads the same environment)
            args += ["--otlp-proxy", self.proxy]
        return tuple(args)
