"""The Tracer a config asks for: the no-op one, or OpenTelemetry's (the `otel` extra)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from llm_gateway.config.errors import ConfigError
from llm_gateway.config.tracing import TracingConfig
from llm_gateway.tracing.base import NO_TRACER, Tracer

# What `pip install "llm-gateway[otel]"` brings, by protocol.
_NEEDED = {
    "http": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "grpc": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc"),
}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def missing_extra(cfg: TracingConfig) -> str | None:
    """Why tracing as configured cannot start here, or None (also when it is off)."""
    if not cfg.enabled:
        return None
    missing = [name for name in _NEEDED[cfg.protocol] if not _installed(name)]
    if not missing:
        return None
    return ("tracing.enabled is true, but the OpenTelemetry packages are not installed "
            f"(missing: {', '.join(missing)}); install them with "
            "pip install \"llm-gateway[otel]\", or set tracing.enabled: false")


def export_headers(cfg: TracingConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The export headers, each from its environment variable (unset ones left out)."""
    return {header.lower(): value for header, var in cfg.headers_env.items()
            if (value := env.get(var))}


def build_tracer(cfg: TracingConfig, env: Mapping[str, str] | None = None, *,
                 service_name: str | None = None) -> Tracer:
    """The tracer; a ConfigError saying what to install when the extra is missing."""
    if not cfg.enabled:
        return NO_TRACER
    problem = missing_extra(cfg)
    if problem is not None:
        raise ConfigError([problem], "tracing")
    env = os.environ if env is None else env
    headers = export_headers(cfg, env)
    endpoint = cfg.export_endpoint()
    from opentelemetry.sdk.trace.export import SpanExporter

    from llm_gateway.tracing.otel import OtelTracer  # only now: OpenTelemetry is imported

    exporter: SpanExporter

    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        exporter = GrpcExporter(endpoint=endpoint, headers=headers or None,
                                insecure=endpoint.startswith("http://"))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )
        exporter = HttpExporter(endpoint=endpoint, headers=headers or None)
    return OtelTracer(exporter, service_name=service_name or cfg.service_name,
                      sample_ratio=cfg.sample_ratio, record_content=cfg.record_content)
