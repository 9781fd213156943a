"""Who may reach the pods behind the gateway, read from the rendered NetworkPolicies of both
overlays (and of the tracing component) by the rules Kubernetes applies: a pod selected by no
ingress policy takes anything; a selected one takes only what some rule admits (a pod
selector in the policy's namespace, a port by number or by the pod's container port name).

Before, nothing selected the workers, Redis or Postgres: any pod in the cluster could call a
worker directly, with no key, limit, budget or ledger, or reset the counters kept in Redis.
"""

from __future__ import annotations

from typing import Any

import pytest
from manifest_support import find, pod_spec

OVERLAYS = ("local", "gpu")
Doc = dict[str, Any]

# (the workload, its kind, the container port it serves on)
WORKER = ("llm-worker", "StatefulSet", "http")
REDIS = ("llm-redis", "StatefulSet", "redis")
POSTGRES = ("llm-postgres", "StatefulSet", "postgres")
GATEWAY = ("llm-gateway", "Deployment", "http")


def pod_labels(docs: list[Doc], name: str, kind: str) -> dict[str, str]:
    return find(docs, kind, name)["spec"]["template"]["metadata"]["labels"]


def container_port(docs: list[Doc], name: str, kind: str, port_name: str) -> int:
    for c in pod_spec(find(docs, kind, name))["containers"]:
        for port in c.get("ports", []):
            if port.get("name") == port_name:
                return port["containerPort"]
    raise AssertionError(f"{kind} {name} has no port {port_name}")


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is read here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admits(docs: list[Doc], source: dict[str, str], target: tuple[str, str, str]) -> bool:
    """Whether a pod labelled ``source`` (in the same namespace) may open a connection to
    ``target``'s serving port."""
    name, kind, port_name = target
    labels = pod_labels(docs, name, kind)
    number = container_port(docs, name, kind, port_name)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                and "Ingress" in d["spec"].get("policyTypes", ["Ingress"])
                and _selects(d["spec"]["podSelector"], labels)]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            ports = rule.get("ports")
            peer_ok = peers is None or any(
                set(peer) == {"podSelector"} and _selects(peer["podSelector"], source)
                for peer in peers)
            port_ok = ports is None or any(p.get("port") in (number, port_name) for p in ports)
            if peer_ok and port_ok:
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_reaches_workers_redis_and_postgres(overlay, rendered) -> None:
    docs = rendered(overlay)
    gateway = pod_labels(docs, "llm-gateway", "Deployment")
    prometheus = pod_labels(docs, "prometheus", "Deployment")
    others = [pod_labels(docs, "chatbot-ui", "Deployment"),
              pod_labels(docs, "grafana", "Deployment"),
              {"app": "anything-else"}]
    for target in (WORKER, REDIS, POSTGRES):
        assert admits(docs, gateway, target), target
        for other in others:
            assert not admits(docs, other, target), (other, target)
    # Prometheus scrapes the workers' /metrics, and nothing of Redis or Postgres.
    assert admits(docs, prometheus, WORKER)
    assert not admits(docs, prometheus, REDIS) and not admits(docs, prometheus, POSTGRES)
    # The gateway is the way in: every pod reaches it (chatbot-ui, an ingress controller).
    for source in (*others, prometheus):
        assert admits(docs, source, GATEWAY)


def test_a_tracing_deployment_keeps_the_same_rules(with_component) -> None:
    docs = with_component("tracing")
    gateway = pod_labels(docs, "llm-gateway", "Deployment")
    collector = pod_labels(docs, "otel-collector", "Deployment")
    assert admits(docs, gateway, WORKER) and not admits(docs, collector, WORKER)
