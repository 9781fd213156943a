"""Reading rendered manifests, for the deployment checks."""

from __future__ import annotations

from typing import Any

Doc = dict[str, Any]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    """The object of ``kind`` named ``name`` (or, for generated ones, ``name-<hash>``)."""
    for doc in docs:
        got = doc["metadata"]["name"]
        if doc["kind"] == kind and (got == name or got.rsplit("-", 1)[0] == name):
            return doc
    raise AssertionError(f"no {kind} {name}")
