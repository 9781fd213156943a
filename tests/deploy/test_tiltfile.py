"""The Tiltfile, executed by a Starlark interpreter (starlark-rust, through starlark-pyo3) with
the Tilt functions it calls stubbed: the stubs have Tilt's signatures (a misspelt argument
fails) and record the calls; `local()` really runs the `kubectl kustomize` it asks for.

What it must declare: the gateway and worker image builds (chatbot-ui's only when a checkout
sits beside this one), the `local` overlay plus the Secret with OPENAI_API_KEY from the
environment, port-forwards 8080 (gateway), 3000 (chatbot-ui) and 9090 (Prometheus), and the
smoke test as a local_resource against the forwarded gateway.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml as pyyaml  # not `yaml`: that is the name of k8s_yaml's parameter

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Blob:
    """Tilt's Blob: text, as opposed to a str, which Tilt takes for a file path."""

    text: str


@dataclass
class TiltRun:
    """What one execution of the Tiltfile declared."""

    builds: dict[str, dict[str, Any]] = field(default_factory=dict)  # ref -> arguments
    objects: list[dict[str, Any]] = field(default_factory=list)  # everything k8s_yaml got
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # workload -> args
    local_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: list[Any] = field(default_factory=list)  # local() calls
    watched: list[str] = field(default_factory=list)

    def workloads(self) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in self.objects
                if o["kind"] in ("Deployment", "StatefulSet")}

    def images(self) -> set[str]:
        """Every container image the applied objects name, without tags."""
        names = set()
        for workload in self.workloads().values():
            spec = workload["spec"]["template"]["spec"]
            for c in spec["containers"] + spec.get("initContainers", []):
                names.add(c["image"].rsplit(":", 1)[0])
        return names


def _stubs(run: TiltRun, environ: dict[str, str], exists: Callable[[str], bool],
           kubectl: str, blob: Callable[[str], Any]) -> dict[str, Callable[..., Any]]:
    """Tilt's functions (https://docs.tilt.dev/api.html) that the Tiltfile may call."""

    def version_settings(check_updates=True, constraint=""):
        assert constraint.startswith(">=")

    def docker_build(ref, context, build_args=None, dockerfile="Dockerfile",
                     dockerfile_contents="", live_update=None, match_in_env_vars=False,
                     ignore=None, only=None, entrypoint=None, target="", ssh="", network="",
                     secret="", extra_tag="", container_args=None, cache_from=None,
                     pull=False, platform="", extra_hosts=None):
        assert ref not in run.builds, f"{ref} built twice"
        run.builds[ref] = {"context": context, "dockerfile": dockerfile}

    def watch_file(file_path):
        run.watched.append(file_path)

    def local(command, quiet=False, command_bat="", echo_off=False, env=None, dir="",
              stdin=None):
        run.commands.append(command)
        assert command == ["kubectl", "kustomize", "k8s/overlays/local"], command
        out = subprocess.run([kubectl, *command[1:]], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60)
        return blob(out.stdout)

    def encode_yaml(obj):
        return blob(pyyaml.safe_dump(obj))

    def k8s_yaml(yaml, allow_duplicates=False):
        for item in yaml if isinstance(yaml, list) else [yaml]:
            text = item.text if isinstance(item, Blob) else (ROOT / item).read_text()
            run.objects += [doc for doc in pyyaml.safe_load_all(text) if doc]

    def k8s_resource(workload="", new_name="", port_forwards=None, extra_pod_selectors=None,
                     trigger_mode=None, resource_deps=None, objects=None, auto_init=True,
                     pod_readiness="", links=None, labels=None, discovery_strategy=""):
        assert workload not in run.resources, f"{workload} configured twice"
        forwards = [port_forwards] if isinstance(port_forwards, (str, int)) else port_forwards
        run.resources[workload] = {"port_forwards": [str(f) for f in forwards or []],
                                   "resource_deps": resource_deps or [], "links": links or [],
                                   "objects": objects or []}

    def link(url, name=None):
        return {"url": url, "name": name}

    def local_resource(name, cmd, deps=None, trigger_mode=None, resource_deps=None,
                       ignore=None, auto_init=True, serve_cmd="", cmd_bat="", serve_cmd_bat="",
                       allow_parallel=False, links=None, labels=None, env=None, serve_env=None,
                       readiness_probe=None, dir="", serve_dir=""):
        run.local_resources[name] = {"cmd": cmd, "resource_deps": resource_deps or [],
                                     "deps": deps, "auto_init": auto_init}

    def getenv(key, default=None):
        return environ.get(key, default)

    return {f.__name__: f for f in (
        version_settings, docker_build, watch_file, local, encode_yaml, k8s_yaml, k8s_resource,
        link, local_resource)} | {"_os_getenv": getenv, "_os_path_exists": exists}


# Tilt's `os` module, built from the stubs above (Starlark has no classes, but has structs).
PRELUDE = "os = struct(getenv = _os_getenv, path = struct(exists = _os_path_exists))\n"


@pytest.fixture(scope="module")
def tilt(tool, python_module) -> Callable[..., TiltRun]:
    starlark = python_module("starlark")
    kubectl = tool("kubectl")
    source = (ROOT / "Tiltfile").read_text()

    def execute(environ: dict[str, str] | None = None, sibling: bool = False) -> TiltRun:
        run = TiltRun()
        checked: list[str] = []

        def exists(path: str) -> bool:
            checked.append(path)
            assert path == "../chatbot-ui", path
            return sibling

        module = starlark.Module()
        def blob(text: str) -> Any:  # passed through Starlark untouched
            return starlark.OpaquePythonObject(Blob(text))

        for name, fn in _stubs(run, environ or {}, exists, kubectl, blob).items():
            module.add_callable(name, fn)
        glb = starlark.Globals.extended_by([starlark.LibraryExtension.StructType,
                                            starlark.LibraryExtension.Print])
        dialect = starlark.Dialect.extended()
        dialect.enable_top_level_stmt = True  # Tilt allows if/for at the top level
        starlark.eval(module, starlark.parse("prelude", PRELUDE, dialect), glb)
        starlark.eval(module, starlark.parse("Tiltfile", source, dialect), glb)
        assert checked, "the Tiltfile never looked for ../chatbot-ui"
        return run

    return execute


def test_builds_the_gateway_and_worker_images(tilt) -> None:
    run = tilt()
    assert set(run.builds) == {"llm-gateway", "llm-gateway-worker"}
    assert run.builds["llm-gateway"]["dockerfile"] == "docker/gateway.Dockerfile"
    assert run.builds["llm-gateway-worker"]["dockerfile"] == "docker/worker.Dockerfile"
    for build in run.builds.values():
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).is_file()
    # Tilt swaps an image in only where the YAML names it: each build must be used.
    assert set(run.builds) <= run.images()
    assert "ghcr.io/mckaywrigley/chatbot-ui" in run.images()  # published, pulled as is


def test_builds_chatbot_ui_from_a_sibling_checkout(tilt) -> None:
    run = tilt(sibling=True)
    assert run.builds["ghcr.io/mckaywrigley/chatbot-ui"] == {
        "context": "../chatbot-ui", "dockerfile": "Dockerfile"}
    assert set(run.builds) <= run.images()


def test_applies_the_local_overlay(tilt, kustomize) -> None:
    run = tilt()
    assert run.commands == [["kubectl", "kustomize", "k8s/overlays/local"]]
    assert "k8s" in run.watched  # edits to the manifests re-run the Tiltfile
    overlay = kustomize(ROOT / "k8s" / "overlays" / "local")
    assert run.objects[:len(overlay)] == overlay


@pytest.mark.parametrize("key", ["sk-from-the-environment", None])
def test_puts_the_openai_key_from_the_environment_into_the_secret(tilt, key) -> None:
    run = tilt({"OPENAI_API_KEY": key} if key else {})
    (secret,) = [o for o in run.objects if o["kind"] == "Secret"
                 and o["metadata"]["name"] == "llm-gateway-secrets"]
    assert secret["stringData"]["OPENAI_API_KEY"] == (key or "")  # empty: local models only
    assert "LLM_GATEWAY_ADMIN_KEY" in secret["stringData"]
    # Where the gateway looks for it.
    gateway = run.workloads()["llm-gateway"]
    assert secret["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in
            gateway["spec"]["template"]["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert {"name": "llm-gateway-secrets", "key": "OPENAI_API_KEY", "optional": True} in refs
    # Deployed together with the gateway, so its pods never start before the Secret exists.
    assert run.resources["llm-gateway"]["objects"] == ["llm-gateway-secrets:secret"]


def test_port_forwards(tilt) -> None:
    run = tilt()
    forwards = {name: r["port_forwards"] for name, r in run.resources.items()
                if r["port_forwards"]}
    assert forwards["llm-gateway"] == ["8080:8080"]
    assert forwards["chatbot-ui"] == ["3000:3000"]
    assert forwards["prometheus"] == ["9090:9090"]
    assert forwards["jaeger"] == ["16686:16686"]  # the traces (k8s/components/tracing)
    # Each forward reaches a port the workload's container listens on.
    workloads = run.workloads()
    for name, ports in forwards.items():
        spec = workloads[name]["spec"]["template"]["spec"]
        listening = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
        for forward in ports:
            assert int(forward.split(":")[-1]) in listening, (name, forward)
    local_ports = [int(f.split(":")[0]) for ports in forwards.values() for f in ports]
    assert len(local_ports) == len(set(local_ports))


def test_resources_name_real_workloads(tilt) -> None:
    run = tilt()
    workloads = run.workloads()
    names = set(workloads) | set(run.local_resources)
    for name, resource in run.resources.items():
        assert name in workloads, f"k8s_resource({name!r}): no such workload"
        assert set(resource["resource_deps"]) <= names
    assert set(workloads) <= set(run.resources)  # each one placed deliberately


def test_smoke_test_runs_against_the_forwarded_gateway(tilt) -> None:
    run = tilt()
    smoke = run.local_resources["smoke"]
    command = smoke["cmd"].split()
    script = ROOT / command[0]
    assert script.is_file() and os.access(script, os.X_OK)
    assert command[0] == "scripts/smoke.sh"
    assert command[1] == "http://localhost:8080"
    assert command[2] in {"gpt-3.5-turbo"}  # the model chatbot-ui uses
    assert "llm-gateway" in smoke["resource_deps"]
    assert smoke["auto_init"] is True
