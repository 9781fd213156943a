"""/health, /metrics and /v1/models on a real worker."""

from __future__ import annotations

import httpx

from worker_support import user

METRICS = ("llm_worker_queue_depth", "llm_worker_active_requests",
           "llm_worker_prompt_tokens_total", "llm_worker_generated_tokens_total",
           "llm_worker_time_per_output_token_seconds", "llm_worker_kv_cache_usage_ratio",
           "llm_worker_model_load_seconds", "llm_worker_up")


def test_health(worker):
    r = httpx.get(worker.url + "/health", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"] == "smollm2" and body["source"] == "default"
    assert body["max_queue"] == 16 and body["n_ctx"] == 4096 and body["embeddings"] is False
    assert body["queue_depth"] == 0 and body["active"] == 0


def test_metrics_names_and_counts(worker, client):
    client.chat.completions.create(model="m", messages=user("hi"), max_tokens=3,
                                   logit_bias={"2": -100})
    r = httpx.get(worker.url + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in METRICS:
        assert f"\n{name}" in text, name
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["llm_worker_up"] == 1 and values["llm_worker_generated_tokens_total"] >= 3
    assert values["llm_worker_time_per_output_token_seconds_count"] >= 2
    assert 0 < values["llm_worker_kv_cache_usage_ratio"] <= 1


def test_models_lists_the_served_name(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["smollm2"]
    assert models.data[0].owned_by == "llm-gateway"
