"""The Grafana dashboard and the Prometheus alert rules only use metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.registry import CollectorRegistry

from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "grafana" / "llm-gateway.json"
ALERTS = ROOT / "k8s" / "prometheus" / "alerts.yaml"

# PromQL words that are not metric names (functions, aggregations, operators, modifiers).
PROMQL_WORDS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "rate", "irate", "increase", "delta", "idelta", "deriv",
    "predict_linear", "histogram_quantile", "abs", "absent", "absent_over_time", "ceil", "floor",
    "round", "clamp", "clamp_min", "clamp_max", "exp", "ln", "log2", "log10", "sqrt", "scalar",
    "vector", "time", "timestamp", "sort", "sort_desc", "label_replace", "label_join", "changes",
    "resets", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "last_over_time", "quantile_over_time", "stddev_over_time", "by",
    "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset",
})
PROMETHEUS_OWN = frozenset({"up"})  # series Prometheus makes itself for every target


def exported() -> set[str]:
    """Every sample name the gateway and the worker can export."""
    registries = [GatewayMetrics().registry, WorkerMetrics(lambda: None).registry]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""]}
    names = set()
    for registry in registries:
        assert isinstance(registry, CollectorRegistry)
        for family in registry.collect():
            names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (Grafana variables allowed) reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors, $__rate_interval included
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    words = set(re.findall(r"(?<![\w$.])[A-Za-z_:][\w:]*", expr))
    return words - PROMQL_WORDS


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            queries.extend(t["expr"] for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(board["panels"])
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", var["query"]["query"])
            assert match, var
            queries.append(match.group(1))
    return queries


def test_promql_names_are_found():
    assert metric_names('histogram_quantile(0.95, sum by (le, model) (rate(a_bucket'
                        '{model=~"$model"}[$__rate_interval])))') == {"a_bucket"}
    assert metric_names("sum(rate(x_total[5m])) / on (pod) group_left y > 0.5") == {
        "x_total", "y"}


def test_dashboard_uses_only_exported_metrics():
    names = exported()
    queries = dashboard_queries()
    assert len(queries) > 20
    used = set()
    for query in queries:
        found = metric_names(query)
        assert found, f"no metric in {query!r}"
        assert found <= names, f"{query!r} reads {sorted(found - names)}, not exported"
        used |= found
    # What the dashboard is for: requests, errors, latency, first token, tokens and cost per
    # team, grouping savings, worker queues.
    for name in ("llm_gateway_requests_total", "llm_gateway_backend_errors_total",
                 "llm_gateway_request_duration_seconds_bucket",
                 "llm_gateway_time_to_first_token_seconds_bucket",
                 "llm_gateway_tokens_total", "llm_gateway_cost_usd_total",
                 "llm_gateway_grouped_requests_total", "llm_gateway_tokens_saved_total",
                 "llm_worker_queue_depth"):
        assert name in used, name


def test_alert_rules_use_only_exported_metrics():
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
             for rule in group["rules"]]
    names = exported() | PROMETHEUS_OWN
    used = set()
    for rule in rules:
        assert rule["alert"] and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        found = metric_names(rule["expr"])
        assert found and found <= names, (rule["alert"], sorted(found - names))
        used |= found
    # High error rate, p95 latency, worker down, budget nearly spent, ledger dropping.
    for name in ("llm_gateway_requests_total", "llm_gateway_request_duration_seconds_bucket",
                 "up", "llm_gateway_budget_remaining", "llm_gateway_ledger_dropped_total"):
        assert name in used, name


def test_alert_rules_load_in_promtool():
    if shutil.which("promtool") is None:
        # CI installs it (.ci/run); elsewhere the parser test above still checks the rules.
        if os.environ.get("CI"):
            pytest.fail("promtool is missing; CI must check the alert rules with it")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    out = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
