"""The backend for each configured upstream, by the wire format it speaks (`kind`)."""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.backends.anthropic import AnthropicBackend
from llm_gateway.backends.azure import AzureBackend
from llm_gateway.backends.base import Backend
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import UpstreamConfig


def upstream_backend(cfg: UpstreamConfig, env: Mapping[str, str], *,
                     max_event_bytes: int) -> Backend:
    if cfg.kind == "openai":
        return UpstreamBackend(cfg, env, max_event_bytes=max_event_bytes)
    if cfg.kind == "azure":
        return AzureBackend(cfg, env, max_event_bytes=max_event_bytes)
    return AnthropicBackend(cfg, env, max_event_bytes=max_event_bytes)
