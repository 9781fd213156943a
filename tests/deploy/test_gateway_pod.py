"""The gateway's pod against its image: the image installs what the manifests configure
(PostgreSQL, Redis), and the pod writes only where its read-only root filesystem lets it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from manifest_support import container, env, find, gateway_config, pod_spec

from llm_gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "gpu")


def image_requirements(tmp_path: Path) -> list[str]:
    """What docker/gateway.Dockerfile's builder stage installs: its own snippet, run here on
    pyproject.toml with the extras its ARG names."""
    text = (ROOT / "docker" / "gateway.Dockerfile").read_text().replace("\\\n", " ")
    extras = re.search(r'^ARG GATEWAY_EXTRAS="([^"]*)"', text, re.M)
    snippet = re.search(r'RUN python -c "(.*?)" \$GATEWAY_EXTRAS', text, re.S)
    assert extras and snippet, "the builder stage no longer has the shape this test reads"
    out = tmp_path / "requirements.txt"
    code = snippet.group(1).replace("/tmp/requirements.txt", str(out))
    subprocess.run([sys.executable, "-c", code, *extras.group(1).split()], cwd=ROOT,
                   check=True, timeout=60)
    return out.read_text().split()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_image_has_what_the_deployment_configures(overlay, rendered,
                                                              tmp_path) -> None:
    """The storage and tracing the manifests set up need optional packages: an image without
    them would crash at start in the cluster (it did: the image had no asyncpg or redis)."""
    docs = rendered(overlay)
    variables = env(container(find(docs, "Deployment", "llm-gateway"), "gateway"))
    config = gateway_config(docs)
    storage = config.get("storage", {})
    needs = set()
    if str(variables.get("LLM_GATEWAY__STORAGE__URL", storage.get("url", ""))).startswith(
            "postgres"):
        needs.add("postgres")
    if variables.get("LLM_GATEWAY__STORAGE__REDIS_URL", storage.get("redis_url")):
        needs.add("redis")
    tracing = config.get("tracing", {})
    if tracing.get("enabled") and tracing.get("protocol") == "grpc":
        needs.add("otel")
    assert {"postgres", "redis"} <= needs  # what the base sets up today
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    installed = image_requirements(tmp_path)
    for extra in needs:
        for requirement in extras[extra]:
            assert requirement in installed, (extra, requirement)


def quantity(text: str) -> int:
    """A Kubernetes binary quantity ("256Mi", "2Gi") in bytes."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_writes_only_where_its_pod_may(overlay, rendered, tmp_path) -> None:
    """A read-only root filesystem: the config the pod ends up with (its ConfigMap and the
    Deployment's overrides) must put the data dir (the usage spool) and temp files (spooled
    uploads) on writable volumes, the latter big enough for the largest upload (the data dir
    was once left at its default under the home directory, and the gateway could not start)."""
    docs = rendered(overlay)
    deployment = find(docs, "Deployment", "llm-gateway")
    gateway = container(deployment, "gateway")
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    writable = {m["mountPath"]: volumes[m["name"]] for m in gateway["volumeMounts"]
                if not m.get("readOnly") and ("emptyDir" in volumes[m["name"]]
                                              or "persistentVolumeClaim" in volumes[m["name"]])}

    def volume_of(path: str) -> dict[str, Any]:
        found = [v for mount, v in writable.items() if path == mount
                 or path.startswith(mount.rstrip("/") + "/")]
        assert found, f"{path} is on the read-only root filesystem"
        return found[0]

    path = tmp_path / "config.yaml"
    path.write_text(find(docs, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"])
    variables = {k: v for k, v in env(gateway).items() if isinstance(v, str)}
    config = load_config(env={**variables, "LLM_GATEWAY_CONFIG": str(path)})
    home = "/home/gateway"  # docker/gateway.Dockerfile's user
    volume_of(config.storage.data_dir.replace("~", home, 1))
    spool = volume_of(variables.get("TMPDIR", "/tmp"))
    assert quantity(spool["emptyDir"]["sizeLimit"]) >= 2 * config.server.max_upload_bytes
