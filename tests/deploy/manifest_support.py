"""Reading rendered manifests, for the deployment checks."""

from __future__ import annotations

from typing import Any

import yaml

Doc = dict[str, Any]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    """The object of ``kind`` named ``name`` (or, for generated ones, ``name-<hash>``)."""
    for doc in docs:
        got = doc["metadata"]["name"]
        if doc["kind"] == kind and (got == name or got.rsplit("-", 1)[0] == name):
            return doc
    raise AssertionError(f"no {kind} {name}")


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def container(doc: Doc, name: str, init: bool = False) -> Doc:
    containers = pod_spec(doc)["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def env(c: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def gateway_config(docs: list[Doc]) -> dict[str, Any]:
    return yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"])
