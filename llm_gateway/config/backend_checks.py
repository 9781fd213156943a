"""Rules spanning the keys of one backend section (`upstreams.<name>`, `local.<name>`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from llm_gateway.config.builder import Builder
from llm_gateway.config.checks import http_url
from llm_gateway.config.proxies import upstream_proxy
from llm_gateway.config.schema import LocalConfig, UpstreamConfig
from llm_gateway.path_safety import segment_problem


def check_local(path: str, name: str, cfg: LocalConfig, route_backend: Callable[[str], str | None],
                b: Builder) -> None:
    """How many workers and where from, and that the fallback leads somewhere else."""
    if cfg.discovery is not None:
        given = {"urls": bool(cfg.urls), "workers": cfg.workers is not None,
                 "gpus": bool(cfg.gpus)}
        for key in (k for k, present in given.items() if present):
            b.fail(f"{path}.{key}", "not allowed with discovery (the workers are the "
                   "addresses its DNS name resolves to)")
    elif cfg.urls:
        for i, url in enumerate(cfg.urls):
            if problem := http_url(url):
                b.fail(f"{path}.urls[{i}]", problem)
        if cfg.workers is not None:
            b.fail(f"{path}.workers", "not allowed with urls (the workers are external; "
                   "their number is the number of urls)")
        if cfg.gpus:
            b.fail(f"{path}.gpus", "not allowed with urls (external workers are not spawned)")
    elif cfg.gpus:
        if cfg.workers is not None and cfg.workers != len(cfg.gpus):
            b.fail(f"{path}.workers", f"must equal the number of gpus ({len(cfg.gpus)}) "
                   "or be left out: one worker runs per GPU")
        for i, gpu in enumerate(cfg.gpus):
            if gpu < 0:
                b.fail(f"{path}.gpus[{i}]", f"must be >= 0, got {gpu}")
            elif gpu in cfg.gpus[:i]:
                b.fail(f"{path}.gpus[{i}]", f"duplicate GPU id {gpu}")
    if cfg.chat_format is not None and cfg.chat_template is not None:
        b.fail(f"{path}.chat_template", "set chat_format or chat_template, not both")
    if cfg.base_port is not None and cfg.base_port + cfg.worker_count - 1 > 65535:
        b.fail(f"{path}.base_port", f"{cfg.worker_count} workers from port {cfg.base_port} "
               "go past 65535")
    if cfg.max_restart_backoff_seconds < cfg.restart_backoff_seconds:
        b.fail(f"{path}.max_restart_backoff_seconds",
               f"must be >= restart_backoff_seconds ({cfg.restart_backoff_seconds})")
    if cfg.fallback is not None:
        target = route_backend(cfg.fallback)
        if target is None:
            b.fail(f"{path}.fallback", f"model {cfg.fallback!r} is not routable (no route "
                   "matches it and routing.default_backend is not set)")
        elif target == name:
            b.fail(f"{path}.fallback",
                   f"model {cfg.fallback!r} routes back to local backend {name!r}")


_KIND_KEYS = {"auth_token_env": "azure", "entra": "azure", "api_version": "azure",
              "azure_deployments": "azure",
              "anthropic_version": "anthropic", "default_max_tokens": "anthropic",
              # OpenAI's own headers (OpenAI-Organization, OpenAI-Project): no other kind's.
              "organization": "openai", "project": "openai"}
# A base_url that already holds Azure's path, to which the backend would add it again.
_AZURE_PATH = re.compile(r"/openai(?:/v1|/deployments(?:/.*)?)?/?$", re.IGNORECASE)


def check_kind(path: str, cfg: UpstreamConfig, b: Builder) -> None:
    """Keys of one provider kind are an error on another: a silently ignored key misleads."""
    for key, kind in _KIND_KEYS.items():
        value = getattr(cfg, key)
        if value not in (None, {}) and cfg.kind != kind:
            b.fail(f"{path}.{key}", f"only for kind: {kind} (this upstream is kind: {cfg.kind})")
    if cfg.kind == "azure":
        check_azure(path, cfg, b)


def check_azure(path: str, cfg: UpstreamConfig, b: Builder) -> None:
    """One credential; the resource's endpoint, not a path in it; deployment names that stay
    one URL path segment (backends/azure.py puts them in the path as they are)."""
    entra = cfg.entra
    given = [key for key, value in (("api_key_env", cfg.api_key_env),
                                    ("auth_token_env", cfg.auth_token_env), ("entra", entra))
             if value]
    if len(given) > 1:  # (named at the last one given)
        b.fail(f"{path}.{given[-1]}", "set one of api_key_env, auth_token_env and entra")
    if entra is not None:
        proofs = [entra.client_secret_env is not None, entra.federated_token_file is not None,
                  entra.managed_identity]
        if sum(proofs) != 1:
            b.fail(f"{path}.entra", "set one of client_secret_env, federated_token_file and "
                   "managed_identity: true")
        elif not entra.managed_identity:
            for key in ("tenant_id", "client_id"):
                if getattr(entra, key) is None:
                    b.fail(f"{path}.entra.{key}", "required with an app's secret or "
                           "federated token (not with managed_identity)")
    if _AZURE_PATH.search(urlsplit(cfg.base_url).path):
        b.fail(f"{path}.base_url", "must be the resource's endpoint (e.g. "
               "https://my-resource.openai.azure.com), without /openai...: the gateway adds "
               "Azure's path itself")
    for model, deployment in cfg.azure_deployments.items():
        problem = segment_problem(deployment)
        if problem is not None:
            b.fail(f"{path}.azure_deployments.{model}",
                   f"{deployment!r} cannot be a deployment name: {problem}")


def check_egress(path: str, cfg: UpstreamConfig, env: Mapping[str, str], b: Builder) -> None:
    """The proxy the environment names for it can be used; a key comes with a certificate.
    (The TLS files are read at start, where they are: a config may be checked elsewhere.)"""
    try:
        upstream_proxy(cfg.proxy, cfg.base_url, env)
    except ValueError as exc:
        b.fail(f"{path}.proxy", f"env: {exc} (set proxy: none, or a proxy URL, to go another "
               "way)")
    if cfg.client_key is not None and cfg.client_cert is None:
        b.fail(f"{path}.client_key", "needs client_cert")
