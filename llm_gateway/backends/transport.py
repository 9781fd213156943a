"""The pooled HTTP transport for one upstream.

httpx's API stays at the seam (httpx.Request in, httpx.Response out, httpx exceptions), but we
call the transport directly: httpx.AsyncClient's per-request URL merging, cookie jar and
redirect/auth machinery cost about a quarter of the gateway's CPU per request
(bench/overhead), and a gateway needs none of them. The transport under it is chosen by
measurement: aiohttp's connection handling is several times cheaper than httpx's default.
"""

from __future__ import annotations

import httpx

from llm_gateway.backends.aiohttp_exact import ExactAiohttpTransport
from llm_gateway.config import UpstreamConfig


def make_transport(cfg: UpstreamConfig) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=cfg.max_connections,
        max_keepalive_connections=cfg.max_connections,
        keepalive_expiry=30.0,
    )
    if cfg.transport == "aiohttp":
        return ExactAiohttpTransport(limits=limits, trust_env=False)  # URLs sent as built
    return httpx.AsyncHTTPTransport(limits=limits, retries=0, trust_env=False)


def timeout_extension(cfg: UpstreamConfig) -> dict[str, float | None]:
    """Per-request timeouts in the form transports read from `request.extensions`."""
    return httpx.Timeout(
        connect=cfg.timeouts.connect,
        read=cfg.timeouts.read,
        write=cfg.timeouts.read,
        pool=cfg.timeouts.connect,
    ).as_dict()
