"""The backend for each configured upstream, by the wire format it speaks (`kind`)."""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.backends.anthropic import AnthropicBackend
from llm_gateway.backends.azure import AzureBackend
from llm_gateway.backends.base import Backend
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import UpstreamConfig


def upstream_backend(cfg: UpstreamConfig, env: Mapping[str, str], *,
                     max_event_bytes: int, max_answer_bytes: int) -> Backend:
    kind = {"openai": UpstreamBackend, "azure": AzureBackend}.get(cfg.kind, AnthropicBackend)
    return kind(cfg, env, max_event_bytes=max_event_bytes, max_answer_bytes=max_answer_bytes)
