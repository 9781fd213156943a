"""scripts/smoke.sh, the post-deploy check Tilt runs: against a gateway in front of the fake
upstream it passes; against nothing it fails, saying so, with exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llm_gateway.testing.gateway import GatewayServer

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "smoke.sh"


def smoke(*args: str, wait: str = "5") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE_WAIT_SECONDS": wait}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_passes_against_a_working_gateway(gateway: GatewayServer) -> None:
    out = smoke(gateway.base, "gpt-4o-mini")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith(("PASS", "FAIL"))] == [
        ["PASS", "models:"], ["PASS", "chat:"], ["PASS", "stream:"]]
    assert lines[-1] == "smoke: PASS (3 of 3 steps)"
    assert "gpt-4o-mini listed" in out.stdout
    # The URL may name /v1 itself.
    assert smoke(gateway.url, "gpt-4o-mini").returncode == 0


def test_fails_when_a_step_fails(gateway: GatewayServer) -> None:
    out = smoke(gateway.base, "no-such-model")
    assert out.returncode == 1
    assert "FAIL  chat: HTTP 404" in out.stdout
    assert out.stdout.splitlines()[-1] == "smoke: FAIL (2 of 3 steps failed)"


def test_fails_when_nothing_answers() -> None:
    out = smoke("http://127.0.0.1:9", wait="0")
    assert out.returncode == 1
    assert "FAIL  models: no answer from http://127.0.0.1:9/v1" in out.stdout
    assert out.stdout.splitlines()[-1] == "smoke: FAIL (3 of 3 steps failed)"


def test_usage() -> None:
    out = smoke()
    assert out.returncode == 2
    assert "usage:" in out.stderr
