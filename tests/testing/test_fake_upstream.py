"""The fake OpenAI upstream over real HTTP: API key, request bookkeeping, standalone entry."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import openai
import pytest

from llm_gateway.testing import FakeUpstream

from fake_support import KEY, chat_body

# --- auth, bookkeeping, standalone ------------------------------------------------------------


def test_api_key() -> None:
    with FakeUpstream(api_key=KEY, models=["only-model"]) as guarded:
        wrong = openai.OpenAI(base_url=guarded.url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.models.list()
        assert err.value.body == {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        right = openai.OpenAI(base_url=guarded.url, api_key=KEY, max_retries=0)
        assert [m.id for m in right.models.list()] == ["only-model"]
        assert guarded.calls["GET /v1/models"] == 2


def test_calls_requests_headers_and_reset(fake: FakeUpstream, http: httpx.Client) -> None:
    r = http.post(
        "/chat/completions?x=1",
        json=chat_body(),
        headers={"x-request-id": "req-abc", "X-Custom": "v"},
    )
    assert r.headers["x-request-id"] == "req-abc"
    assert r.headers["openai-processing-ms"] == "1"
    assert http.get("/models").headers["x-request-id"]
    bad = http.post("/chat/completions", content=b"not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    outside = httpx.get(fake.url.removesuffix("/v1") + "/elsewhere")
    assert outside.status_code == 404 and outside.json()["error"]["code"] == "unknown_url"
    assert fake.calls == {"POST /v1/chat/completions": 2, "GET /v1/models": 1, "GET /elsewhere": 1}
    first = fake.requests[0]
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "x=1")
    assert first.headers["x-custom"] == "v"
    assert first.json == chat_body() and first.body.startswith(b"{")
    assert fake.requests[2].json is None
    fake.fail_next(500)
    fake.reset()
    assert not fake.calls and not fake.requests
    assert http.get("/models").status_code == 200


def test_standalone_entry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llm_gateway.testing.fake_upstream",
            "--port",
            str(port),
            "--chunk-delay",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}/v1" in proc.stdout.readline()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        assert r.status_code == 200 and r.json()["object"] == "list"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Warning" not in err
