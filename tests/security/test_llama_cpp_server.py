"""Issue 13, defect 9: the gateway fronts llama-cpp-python's own server, answering as it does.

That server (`python -m llama_cpp.server`) wants a UUID in `x-request-id` and answers anything
else with an empty 400, so the `req_<hex>` id the gateway used to add broke every request.
One server (`--embedding true` serves chat, completions and embeddings alike) runs the
default model for the whole module; each answer through the gateway must equal the direct one
but for its id and `created`.

The server resumes from the previous request's cached prompt, which can change a greedy
answer's last digits; so each direct call follows the same call made once before, and the
gateway's call follows the direct one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from llm_gateway.backends.supervisor import free_ports
from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer
from llm_gateway.worker.models import default_model_path

from gateway_support import ENV, require_local_extra

require_local_extra()
# llama-cpp-python's `server` extra (a dev dependency): in CI its absence is a failure.
_MISSING = [m for m in ("fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run this test, but {_MISSING} are not installed")
    pytest.skip("pip install 'llama-cpp-python[server]'", allow_module_level=True)

MODEL = "smollm2"
MESSAGES = [{"role": "user", "content": "Name three colours."}]
VOLATILE = {"id", "created"}  # differ on every answer, direct or not


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    """llama-cpp-python's server on a free port; its /v1 base URL."""
    [port] = free_ports("127.0.0.1", 1)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
        "--host", "127.0.0.1", "--port", str(port), "--embedding", "true", "--n_ctx", "512",
        "--n_threads", "1", "--n_threads_batch", "1", "--seed", "7", "--verbose", "false",
    ]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"llama_cpp.server exited with {proc.returncode}"
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start in 120 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def gw(llama: str) -> Iterator[GatewayServer]:
    config = {
        "upstreams": {"llama": {
            "base_url": llama, "list_models": False, "retries": {"attempts": 0},
            "timeouts": {"connect": 5, "read": 120, "total": 300},
        }},
        "models": [{"name": MODEL, "backend": "llama"}],
    }
    with GatewayServer(parse_config(config, env=ENV), env=ENV) as server:
        yield server


def _both(llama: str, gw: GatewayServer, path: str, body: dict[str, Any]
          ) -> tuple[httpx.Response, httpx.Response]:
    """The direct answer and the gateway's to the same request (see the module docstring)."""
    httpx.post(llama + path, json=body, timeout=120)
    direct = httpx.post(llama + path, json=body, timeout=120)
    through = httpx.post(gw.url + path, json=body, timeout=120)
    assert direct.status_code == 200, direct.text
    assert through.status_code == 200, (through.status_code, through.text)
    return direct, through


def _stable(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in VOLATILE}


def _events(body: bytes) -> list[Any]:
    """The data of each SSE event, JSON ones without their volatile fields."""
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"".join(line[5:].strip() for line in block.split(b"\n")
                        if line.startswith(b"data:"))
        if data:
            events.append(data.decode() if data == b"[DONE]" else _stable(orjson.loads(data)))
    return events


def test_chat(llama, gw):
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 12, "temperature": 0,
            "seed": 7}
    direct, through = _both(llama, gw, "/chat/completions", body)
    assert _stable(through.json()) == _stable(direct.json())
    assert through.json()["choices"][0]["message"]["content"]
    # The upstream's own id comes back under another name; ours is the client's to quote.
    assert through.headers["x-upstream-request-id"]
    assert through.headers["x-request-id"].startswith("req_")


def test_completions(llama, gw):
    body = {"model": MODEL, "prompt": "The sky is", "max_tokens": 12, "temperature": 0,
            "seed": 7}
    direct, through = _both(llama, gw, "/completions", body)
    assert _stable(through.json()) == _stable(direct.json())
    assert through.json()["choices"][0]["text"]


def test_streaming_chat(llama, gw):
    # Another question than test_chat's: the gateway's response cache would answer that one.
    messages = [{"role": "user", "content": "Name three fruits."}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 12, "temperature": 0,
            "seed": 7, "stream": True}
    direct, through = _both(llama, gw, "/chat/completions", body)
    assert through.headers["content-type"].startswith("text/event-stream")
    events = _events(through.content)
    assert events == _events(direct.content)
    assert events[-1] == "[DONE]" and len(events) > 3


def test_embeddings(llama, gw):
    body = {"model": MODEL, "input": ["red", "the colour of the sky"]}
    direct, through = _both(llama, gw, "/embeddings", body)
    assert _stable(through.json()) == _stable(direct.json())
    assert len(through.json()["data"]) == 2


def test_the_clients_uuid_request_id_reaches_the_server(llama, gw):
    """A client that sends the id this server wants gets it there untouched."""
    uuid = "6f1c9a7e-2b7d-4c39-9a5e-1b2c3d4e5f60"
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, "temperature": 0}
    r = httpx.post(gw.url + "/chat/completions", json=body, headers={"x-request-id": uuid},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["x-upstream-request-id"] == uuid
