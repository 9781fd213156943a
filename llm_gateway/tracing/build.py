"""The Tracer a config asks for: the no-op one, or the native one (native.py); OTLP/gRPC
needs grpcio (the `otel` extra)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from llm_gateway.config.errors import ConfigError
from llm_gateway.config.proxies import Proxy, upstream_proxy
from llm_gateway.config.tracing import TracingConfig
from llm_gateway.tracing.base import NO_TRACER, Tracer

# What `pip install "llm-gateway[otel]"` brings that a protocol needs: OTLP/HTTP needs
# nothing beyond the gateway's own dependencies (httpx); OTLP/gRPC needs grpcio.
_NEEDED: dict[str, tuple[str, ...]] = {"http": (), "grpc": ("grpc",)}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):  # a parent package is missing
        return False


def missing_extra(cfg: TracingConfig) -> str | None:
    """Why tracing as configured cannot start here, or None (also when it is off)."""
    if not cfg.enabled:
        return None
    missing = [name for name in _NEEDED[cfg.protocol] if not _installed(name)]
    if not missing:
        return None
    return (f"tracing.enabled is true with protocol {cfg.protocol}, but grpcio is not "
            f"installed (missing: {', '.join(missing)}); install it with "
            "pip install \"llm-gateway[otel]\", use protocol: http, "
            "or set tracing.enabled: false")


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
    proxy = export_proxy(cfg, env)
    from llm_gateway.tracing.native import NativeTracer
    from llm_gateway.tracing.transport import transport

    return NativeTracer(transport(cfg.protocol, cfg.export_endpoint(), headers, proxy),
                        service_name=service_name or cfg.service_name,
                        sample_ratio=cfg.sample_ratio, record_content=cfg.record_content)


def export_proxy(cfg: TracingConfig, env: Mapping[str, str]) -> Proxy | None:
    """The proxy the exports go through (`tracing.proxy`, as an upstream's `proxy`); a
    ConfigError naming the variable when the environment's cannot be used."""
    endpoint = cfg.export_endpoint()
    try:
        return upstream_proxy(cfg.proxy, endpoint if "://" in endpoint else f"http://{endpoint}",
                              env)
    except ValueError as exc:
        raise ConfigError([f"tracing.proxy: {exc}"], "tracing") from None
