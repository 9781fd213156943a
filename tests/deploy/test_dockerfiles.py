"""The images, without a Docker engine: every Dockerfile passes hadolint (.hadolint.yaml: any
finding fails), and the gateway image keeps its promises (slim base, no compilers in the final
stage, an unprivileged user, a HEALTHCHECK on /healthz, configuration by file or env)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path: Path, tool) -> None:
    out = subprocess.run([tool("hadolint"), str(path.relative_to(ROOT))], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def final_stage(path: Path) -> list[str]:
    """The instructions of the last stage, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[start:]


def test_gateway_image() -> None:
    stage = final_stage(ROOT / "docker" / "gateway.Dockerfile")
    base = stage[0].split()[1]
    assert base.startswith("python:") and "-slim" in base
    body = "\n".join(stage)
    for compiler in ("build-essential", "gcc", "g++", "cmake", "apt-get install"):
        assert compiler not in body
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users and all(not u.startswith(("0", "root")) for u in users)
    assert users[-1].split(":")[0].isdigit()  # numeric: runAsNonRoot can check it
    (check,) = [line for line in stage if line.startswith("HEALTHCHECK ")]
    assert "http://127.0.0.1:8080/healthz" in check
    assert "EXPOSE 8080" in stage
    assert "LLM_GATEWAY__SERVER__HOST=0.0.0.0" in body  # reachable from outside the container
    assert stage[-2:] == ['ENTRYPOINT ["llm-gateway"]', 'CMD ["serve"]']


@pytest.mark.parametrize("name", ["worker.Dockerfile", "worker-cuda.Dockerfile"])
def test_the_workers_model_cache_is_its_own(name: str) -> None:
    """$HF_HOME exists in the image, made by the unprivileged user: a volume mounted there (the
    hf-cache example in docker/README.md) then takes the worker's ownership, where one on a
    missing path would be root's and refuse the worker's downloads."""
    stage = final_stage(ROOT / "docker" / name)
    (home,) = [i for i, line in enumerate(stage) if line.startswith("ENV HF_HOME=")]
    made = [i for i, line in enumerate(stage)
            if line.startswith("RUN ") and 'mkdir -p "$HF_HOME"' in line]
    assert made and made[0] > home
    users = [line.split()[1] for line in stage[:made[0]] if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] == "10001"
