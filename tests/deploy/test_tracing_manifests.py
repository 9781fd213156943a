"""The local overlay's tracing (k8s/components/tracing): the gateway exports to the
collector's OTLP/HTTP port, the collector to Jaeger's OTLP/gRPC port, each by a Service that
exists and a port it has; the gpu overlay leaves the component out."""

from __future__ import annotations

import yaml
from manifest_support import Doc, find


def _port(service: Doc, name: str) -> int:
    return next(p["port"] for p in service["spec"]["ports"] if p["name"] == name)


def test_local_overlay_traces_to_jaeger_through_the_collector(rendered) -> None:
    docs = rendered("local")
    config = yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"][
        "config.yaml"])
    tracing = config["tracing"]
    assert tracing["enabled"] is True and tracing["protocol"] == "http"
    host_port = tracing["endpoint"].removeprefix("http://").split("/")[0]
    collector_port = _port(find(docs, "Service", "otel-collector"), "otlp-http")
    assert host_port == f"otel-collector:{collector_port}"
    collector_config = find(docs, "ConfigMap", "otel-collector-config")
    pipeline_config = yaml.safe_load(collector_config["data"]["config.yaml"])
    pipeline = pipeline_config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    exporter = pipeline_config["exporters"][pipeline["exporters"][0]]
    jaeger = find(docs, "Service", "jaeger")
    assert exporter["endpoint"] == f"jaeger:{_port(jaeger, 'otlp-grpc')}"
    collector = find(docs, "Deployment", "otel-collector")
    volumes = collector["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["configMap"]["name"] == collector_config["metadata"]["name"]


def test_local_workers_export_their_spans_to_the_same_collector(rendered) -> None:
    docs = rendered("local")
    config = yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"][
        "config.yaml"])
    worker = find(docs, "StatefulSet", "llm-worker")
    (container,) = [c for c in worker["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "worker"]
    args = dict(a.split("=", 1) for a in container["args"] if a.startswith("--otlp-"))
    assert args == {"--otlp-endpoint": config["tracing"]["endpoint"],
                    "--otlp-protocol": config["tracing"]["protocol"],
                    "--otlp-service-name": "llm-gateway-worker"}
    assert "--model=/models/model.gguf" in container["args"]  # added to, not replaced


def test_the_gpu_overlay_leaves_tracing_out(rendered) -> None:
    docs = rendered("gpu")
    assert not [d for d in docs if d["metadata"]["name"] in ("otel-collector", "jaeger")]
    config = yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"][
        "config.yaml"])
    assert not config.get("tracing", {}).get("enabled", False)
    worker = find(docs, "StatefulSet", "llm-worker")
    for container in worker["spec"]["template"]["spec"]["containers"]:
        assert not [a for a in container.get("args", []) if a.startswith("--otlp-")]
