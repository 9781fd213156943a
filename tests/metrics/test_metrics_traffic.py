"""Known traffic through the gateway (fake upstream), then /metrics: counts and token sums
equal what was sent, labels stay bounded."""

from __future__ import annotations

import httpx
import openai
import pytest

from llm_gateway.metrics.registry import OTHER, Bounded

from gateway_support import UPSTREAM_KEY, gateway_config
from metrics_support import label_values, scrape, settled, value


def _client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key="sk-client-key", max_retries=0)


def test_counts_and_token_sums_match_the_traffic(fake, make_gateway):
    gw = make_gateway()
    client = _client(gw)
    prompt = completion = 0

    def add(usage) -> None:
        nonlocal prompt, completion
        prompt += getattr(usage, "prompt_tokens", None) or getattr(usage, "input_tokens", 0)
        completion += getattr(usage, "completion_tokens", None) or getattr(
            usage, "output_tokens", 0)

    for i in range(5):
        add(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello number {i}"}]
        ).usage)
    for i in range(3):  # streams that report usage in their last chunk
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"count {i} words please"}]))
        add(chunks[-1].usage)
    for _ in range(2):  # streams whose client did not ask for usage: the gateway asks, and
        # counts it; what it counts is what the fake reports for the same stream asked directly
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}]))
        assert all(c.choices for c in chunks)  # the usage chunk was not passed on
        direct = openai.OpenAI(base_url=fake.url, api_key=UPSTREAM_KEY, max_retries=0)
        add(list(direct.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hi"}]))[-1].usage)
    add(client.completions.create(model="gpt-4o-mini", prompt="say this please").usage)
    add(client.responses.create(model="gpt-4o-mini", input="a responses request").usage)
    alias = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "via the alias"}]).usage

    samples = settled(gw.base, 13)
    mini = {"model": "gpt-4o-mini", "backend": "openai", "team": "none"}
    assert value(samples, "llm_gateway_requests_total", status="200", **mini) == 12
    assert value(samples, "llm_gateway_requests_total", model="gpt-3.5-turbo") == 1
    assert value(samples, "llm_gateway_tokens_total", model="gpt-4o-mini", team="none",
                 kind="prompt") == prompt
    assert value(samples, "llm_gateway_tokens_total", model="gpt-4o-mini", team="none",
                 kind="completion") == completion
    assert value(samples, "llm_gateway_tokens_total", model="gpt-3.5-turbo",
                 kind="completion") == alias.completion_tokens
    # The fake reports cached_tokens 0: nothing to count.
    assert value(samples, "llm_gateway_tokens_total", kind="cached") == 0
    assert value(samples, "llm_gateway_request_duration_seconds_count", model="gpt-4o-mini",
                 backend="openai") == 12
    assert value(samples, "llm_gateway_time_to_first_token_seconds_count",
                 model="gpt-4o-mini") == 5
    assert value(samples, "llm_gateway_overhead_seconds_count") == 13
    assert 0 < value(samples, "llm_gateway_overhead_seconds_sum") < value(
        samples, "llm_gateway_request_duration_seconds_sum")
    assert value(samples, "llm_gateway_inflight_requests", backend="openai") == 0
    assert value(samples, "llm_gateway_backend_errors_total") == 0


def test_every_documented_metric_is_exported(make_gateway):
    gw = make_gateway()
    text = httpx.get(f"{gw.base}/metrics").text
    for name in ("requests", "tokens", "cost_usd", "grouped_requests", "tokens_saved",
                 "backend_errors", "ratelimited", "ledger_dropped"):
        assert f"# TYPE llm_gateway_{name}_total counter" in text
    for name in ("request_duration_seconds", "time_to_first_token_seconds",
                 "overhead_seconds"):
        assert f"# TYPE llm_gateway_{name} histogram" in text
    for name in ("inflight_requests", "budget_remaining", "ledger_queue_depth"):
        assert f"# TYPE llm_gateway_{name} gauge" in text


def test_unconfigured_models_land_in_other(fake, make_gateway):
    gw = make_gateway()
    client = _client(gw)
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    # gpt-4o only matches the pattern gpt-*: its name is not known until a backend lists it.
    client.chat.completions.create(model="gpt-4o", **ask)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model-7f3a", **ask)
    client.chat.completions.create(model="gpt-made-up-9z", **ask)  # the fake answers anything
    samples = settled(gw.base, 3)
    assert value(samples, "llm_gateway_requests_total", model=OTHER, status="200") == 2
    assert value(samples, "llm_gateway_requests_total", model=OTHER, backend="none",
                 status="404") == 1

    client.models.list()  # now the catalog has the upstream's list, gpt-4o included
    client.chat.completions.create(model="gpt-4o", **ask)
    client.chat.completions.create(model="gpt-made-up-9z", **ask)
    samples = settled(gw.base, 6)
    assert value(samples, "llm_gateway_requests_total", model="gpt-4o") == 1
    assert value(samples, "llm_gateway_requests_total", model=OTHER, status="200") == 3
    configured = {"gpt-4o-mini", "gpt-3.5-turbo", "house-model", "acme/house-llm"}
    listed = set(fake.models)
    for name in ("llm_gateway_requests_total", "llm_gateway_tokens_total",
                 "llm_gateway_request_duration_seconds_count"):
        assert label_values(samples, name, "model") <= configured | listed | {OTHER, "none"}
        assert "no-such-model-7f3a" not in label_values(samples, name, "model")
    assert label_values(samples, "llm_gateway_requests_total", "team") == {"none"}


def test_no_key_or_request_id_becomes_a_label(make_gateway):
    gw = make_gateway()
    r = httpx.post(f"{gw.url}/chat/completions", headers={
        "authorization": "Bearer sk-client-key", "x-request-id": "req-label-check-42"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    settled(gw.base, 1)
    text = httpx.get(f"{gw.base}/metrics").text
    assert "req-label-check-42" not in text
    assert "sk-client-key" not in text and "sk-upstream-secret" not in text


def test_team_label_is_bounded():
    teams = Bounded(["research"])
    assert teams("research") == "research"
    assert teams("someone-else") == OTHER
    assert teams(None) == "none"


def test_backend_errors_by_code(fake, make_gateway):
    gw = make_gateway()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    fake.fail_next(429)
    assert httpx.post(f"{gw.url}/chat/completions", json=body).status_code == 429
    fake.fail_next(503, times=3)  # the first try and both retries
    assert httpx.post(f"{gw.url}/chat/completions", json=body).status_code == 503
    fake.drop_next_stream(after_chunks=2)
    with httpx.stream("POST", f"{gw.url}/chat/completions", json={**body, "stream": True}) as r:
        assert b'data: {"error"' in r.read()
    samples = settled(gw.base, 3)
    errors = "llm_gateway_backend_errors_total"
    assert value(samples, errors, backend="openai", code="429") == 1
    assert value(samples, errors, backend="openai", code="503") == 1
    assert value(samples, errors, backend="openai", code="stream_error") == 1
    assert value(samples, "llm_gateway_requests_total", status="429") == 1
    assert value(samples, "llm_gateway_requests_total", status="503") == 1


def test_unreachable_upstream_is_a_backend_error(make_gateway):
    config = gateway_config("http://127.0.0.1:9/v1")  # nothing listens on the discard port
    config["upstreams"]["openai"]["retries"] = {"attempts": 0}
    gw = make_gateway(config)
    r = httpx.post(f"{gw.url}/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502
    samples = settled(gw.base, 1)
    assert value(samples, "llm_gateway_backend_errors_total", backend="openai",
                 code="upstream_unavailable") == 1


def test_passthrough_is_counted_without_a_model(make_gateway):
    gw = make_gateway()
    assert httpx.get(f"{gw.url}/files").status_code == 200
    samples = settled(gw.base, 1)
    assert value(samples, "llm_gateway_requests_total", model="none", backend="openai",
                 status="200") == 1


def test_probes_and_scrapes_are_not_counted(make_gateway):
    gw = make_gateway()
    for path in ("/healthz", "/readyz", "/metrics") * 3:
        assert httpx.get(gw.base + path).status_code == 200
    samples = scrape(gw.base)
    assert value(samples, "llm_gateway_requests_total") == 0


def test_metrics_can_be_turned_off(fake, make_gateway):
    gw = make_gateway(gateway_config(fake.url, metrics={"enabled": False}))
    r = httpx.post(f"{gw.url}/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200
    off = httpx.get(f"{gw.base}/metrics")
    assert off.status_code == 404
    assert off.json()["error"]["message"].startswith("Metrics are disabled")


def test_listed_model_names_are_bounded_as_labels_and_in_the_list(fake, make_gateway):
    # An upstream may list any number of models, of any length: the list keeps the first
    # 10,000 usable ids (at most 256 characters), the `model` label the first 1,000 of them.
    long_id = "gpt-" + "x" * 300
    saved = fake.models
    fake.models = [long_id] + [f"gpt-bulk-{i:05d}" for i in range(10_050)]
    try:
        _check_bounded_listing(make_gateway(), long_id)
    finally:
        fake.models = saved


def _check_bounded_listing(gw, long_id: str) -> None:
    client = _client(gw)
    ids = {m.id for m in client.models.list()}
    assert long_id not in ids
    assert "gpt-bulk-09999" in ids and "gpt-bulk-10000" not in ids
    assert len({i for i in ids if i.startswith("gpt-bulk-")}) == 10_000
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    client.chat.completions.create(model="gpt-bulk-00005", **ask)
    client.chat.completions.create(model="gpt-bulk-05000", **ask)  # listed, past 1,000
    samples = settled(gw.base, 3)  # the list and the two chats
    assert value(samples, "llm_gateway_requests_total", model="gpt-bulk-00005") == 1
    assert value(samples, "llm_gateway_requests_total", model=OTHER, status="200") == 1
    labels = label_values(samples, "llm_gateway_requests_total", "model")
    assert "gpt-bulk-05000" not in labels
