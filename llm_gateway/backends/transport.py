"""The pooled HTTP transport for one upstream: its proxy and its TLS trust.

httpx's API stays at the seam (httpx.Request in, httpx.Response out, httpx exceptions), but we
call the transport directly: httpx.AsyncClient's per-request URL merging, cookie jar and
redirect/auth machinery cost about a quarter of the gateway's CPU per request
(bench/overhead), and a gateway needs none of them. The transport under it is chosen by
measurement: aiohttp's connection handling is several times cheaper than httpx's default.

Neither reads the environment itself (`trust_env=False`: aiohttp would also send ~/.netrc
passwords upstream). The proxy is the one config/proxies.py picks for the upstream (by
default from HTTPS_PROXY and friends), and the TLS context is built here: `ca_file`, else
SSL_CERT_FILE / SSL_CERT_DIR, else certifi's bundle; `client_cert` for mutual TLS.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping

import certifi
import httpx

from llm_gateway.backends.aiohttp_exact import ExactAiohttpTransport
from llm_gateway.config import ConfigError, UpstreamConfig
from llm_gateway.config.proxies import upstream_proxy

log = logging.getLogger(__name__)


def make_transport(cfg: UpstreamConfig, env: Mapping[str, str]) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=cfg.max_connections,
        max_keepalive_connections=cfg.max_connections,
        keepalive_expiry=30.0,
    )
    proxy = upstream_proxy(cfg.proxy, cfg.base_url, env)
    if proxy is not None:
        log.info("upstream %s: through the proxy %s (%s)", cfg.name, proxy.shown, proxy.source)
    try:
        # An http upstream has no TLS: a broken SSL_CERT_FILE must not stop it.
        tls: ssl.SSLContext | bool = tls_context(cfg, env) \
            if cfg.base_url.startswith("https:") else True
    except (OSError, ssl.SSLError) as exc:  # (ssl.SSLError is an OSError; named for clarity)
        raise ConfigError([f"upstreams.{cfg.name}: its TLS files cannot be used "
                           f"(ca_file, client_cert, client_key): {exc}"]) from None
    if cfg.transport == "aiohttp":
        return ExactAiohttpTransport(limits=limits, trust_env=False, verify=tls,
                                     via=proxy.url if proxy else None)  # URLs sent as built
    return httpx.AsyncHTTPTransport(limits=limits, retries=0, trust_env=False, verify=tls,
                                    proxy=httpx.Proxy(proxy.url) if proxy else None)


def tls_context(cfg: UpstreamConfig, env: Mapping[str, str]) -> ssl.SSLContext:
    """What an upstream's certificate is verified against, and the client certificate."""
    if cfg.ca_file:
        context = ssl.create_default_context(cafile=os.path.expanduser(cfg.ca_file))
    elif env.get("SSL_CERT_FILE"):
        context = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    elif env.get("SSL_CERT_DIR"):
        context = ssl.create_default_context(capath=env["SSL_CERT_DIR"])
    else:
        context = ssl.create_default_context(cafile=certifi.where())
    if cfg.client_cert:
        key = os.path.expanduser(cfg.client_key) if cfg.client_key else None
        context.load_cert_chain(os.path.expanduser(cfg.client_cert), key)
    return context


def timeout_extension(cfg: UpstreamConfig) -> dict[str, float | None]:
    """Per-request timeouts in the form transports read from `request.extensions`."""
    return httpx.Timeout(
        connect=cfg.timeouts.connect,
        read=cfg.timeouts.read,
        write=cfg.timeouts.read,
        pool=cfg.timeouts.connect,
    ).as_dict()
