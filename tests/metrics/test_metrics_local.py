"""Tokens a local llama.cpp worker (the bundled SmolLM2) reports are counted like any other."""

from __future__ import annotations

import time

import httpx
import openai

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, gateway_config, require_local_extra
from metrics_support import settled, value

require_local_extra()

# One small, quick worker: short context, one thread, fast health checks.
SMOL = {"model": "default", "n_ctx": 1024, "n_threads": 1, "max_queue": 4,
        "health_interval_seconds": 0.5, "startup_timeout_seconds": 60,
        "timeouts": {"connect": 2, "read": 30, "total": 60}}


def test_local_worker_tokens_are_counted(fake):
    config = gateway_config(fake.url)
    config["local"] = {"smol": SMOL}
    config["models"].append({"name": "smol", "backend": "smol"})
    # Two backend calls are measured: the second must not be answered from the response cache.
    config["grouping"] = {"cache": {"enabled": False}}
    with GatewayServer(parse_config(config, env=ENV), env=ENV) as gw:
        pool = gw.app.state.backends["smol"].pool
        deadline = time.monotonic() + 60
        while not pool.any_healthy():
            assert time.monotonic() < deadline, [w.status for w in pool.workers]
            time.sleep(0.05)
        assert httpx.get(f"{gw.base}/readyz").status_code == 200

        client = openai.OpenAI(base_url=gw.url, api_key="sk-client", max_retries=0, timeout=60)
        ask = {"model": "smol", "max_tokens": 6, "temperature": 0,
               "messages": [{"role": "user", "content": "Name a colour."}]}
        raw = client.chat.completions.with_raw_response.create(**ask)
        assert raw.headers["x-lgw-backend"] == "smol"
        plain = raw.parse().usage
        chunks = list(client.chat.completions.create(
            **ask, stream=True, stream_options={"include_usage": True}))
        streamed = chunks[-1].usage
        assert plain.completion_tokens > 0 and streamed.completion_tokens > 0

        samples = settled(gw.base, 2)
        tokens = "llm_gateway_tokens_total"
        assert value(samples, "llm_gateway_requests_total", model="smol", backend="smol",
                     status="200") == 2
        assert value(samples, tokens, model="smol", kind="prompt") == (
            plain.prompt_tokens + streamed.prompt_tokens)
        assert value(samples, tokens, model="smol", kind="completion") == (
            plain.completion_tokens + streamed.completion_tokens)
        # The second request may reuse the first one's prompt cache; the worker reports it.
        cached = sum((u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details
                     else 0 for u in (plain, streamed))
        assert value(samples, tokens, model="smol", kind="cached") == cached
        assert value(samples, "llm_gateway_time_to_first_token_seconds_count",
                     model="smol") == 1
        assert value(samples, "llm_gateway_inflight_requests", backend="smol") == 0
