"""The optional components (k8s/components/) added to an overlay: their objects validate and
fit the gateway they join. (The tracing component: test_tracing_manifests.py.)"""

from __future__ import annotations

import subprocess
import sys

import yaml
from manifest_support import find


def test_the_ingress_component_validates(with_component, python_module, k8s_version) -> None:
    validator = python_module("kubernetes_validate")
    ingress = find(with_component("ingress-hash"), "Ingress", "llm-gateway")
    validator.validate(ingress, k8s_version, strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "llm-gateway", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/upstream-hash-by"].startswith("$http_")


def test_the_azure_workload_identity_component(with_component, python_module, k8s_version,
                                               tmp_path) -> None:
    """The gateway's pods run as the annotated service account, labelled for the webhook,
    and a config using the token file it mounts passes `config check`."""
    validator = python_module("kubernetes_validate")
    docs = with_component("azure-workload-identity")
    account = find(docs, "ServiceAccount", "llm-gateway")
    deployment = find(docs, "Deployment", "llm-gateway")
    for doc in (account, deployment):
        validator.validate(doc, k8s_version, strict=True)
    assert account["metadata"]["namespace"] == "llm"
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "llm-gateway"
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "llm-gateway"  # kept
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "upstreams": {"azure": {"kind": "azure", "base_url": "https://r.openai.azure.com",
                                "entra": {"tenant_id": "contoso.onmicrosoft.com",
                                          "client_id": account["metadata"]["annotations"][
                                              "azure.workload.identity/client-id"],
                                          "federated_token_file": "/var/run/secrets/azure/"
                                          "tokens/azure-identity-token"}}},
        "models": [{"name": "gpt-4o", "backend": "azure"}]}))
    out = subprocess.run([sys.executable, "-m", "llm_gateway", "config", "check", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
