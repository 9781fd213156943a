"""The accounting metrics: cost from the configured prices, tokens saved by grouping."""

from __future__ import annotations

import math

import openai

from gateway_support import gateway_config
from metrics_support import settled, value

PRICE = {"input": 2.0, "output": 8.0}  # USD per million tokens


def test_cost_and_tokens_saved_reach_the_metrics(fake, make_gateway):
    gw = make_gateway(gateway_config(fake.url, accounting={"prices": {"gpt-4o-mini": PRICE}}))
    client = openai.OpenAI(base_url=gw.url, api_key="sk-client", max_retries=0)
    ask = {"model": "gpt-4o-mini", "temperature": 0,
           "messages": [{"role": "user", "content": "the same question twice"}]}
    first = client.chat.completions.with_raw_response.create(**ask)
    second = client.chat.completions.with_raw_response.create(**ask)
    assert first.headers["x-lgw-cache"] == "miss" and second.headers["x-lgw-cache"] == "hit"
    usage = first.parse().usage
    assert second.parse().usage == usage
    assert fake.calls["POST /v1/chat/completions"] == 1

    samples = settled(gw.base, 2)
    # Only the first answer is charged (accounting.charge_grouped is false by default).
    expected = (usage.prompt_tokens * PRICE["input"]
                + usage.completion_tokens * PRICE["output"]) / 1e6
    assert expected > 0
    assert math.isclose(value(samples, "llm_gateway_cost_usd_total", model="gpt-4o-mini",
                              team="none"), expected, rel_tol=1e-9)
    assert value(samples, "llm_gateway_tokens_saved_total", team="none") == usage.total_tokens
    assert value(samples, "llm_gateway_grouped_requests_total") == 1
