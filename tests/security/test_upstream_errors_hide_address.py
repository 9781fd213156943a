"""Issue 13, defect 10: a 502 told the client where the upstream is (`Cannot connect to host
127.0.0.1:PORT ...`). The client now learns which backend failed, by its config name, and
nothing more; the gateway's log keeps the details.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from llm_gateway.testing import FakeUpstream

from gateway_support import gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_502_names_the_backend_not_its_address(
        fake: FakeUpstream, make_gateway, transport: str) -> None:
    port = closed_port()
    config = gateway_config(f"http://127.0.0.1:{port}/v1")
    config["upstreams"]["openai"]["transport"] = transport
    gateway = make_gateway(config)
    answers = [
        httpx.post(f"{gateway.url}/chat/completions", json=CHAT, timeout=10),
        httpx.post(f"{gateway.url}/chat/completions", json={**CHAT, "stream": True}, timeout=10),
        httpx.get(f"{gateway.url}/files", timeout=10),  # the passthrough, without a body
        httpx.post(f"{gateway.url}/files", content=b"x" * 100, timeout=10,  # and with one
                   headers={"content-type": "application/octet-stream"}),
    ]
    for r in answers:
        assert r.status_code == 502, (r.request.url, r.content[:300])
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "upstream_unavailable"
        assert error["message"] == "upstream 'openai' could not be reached"
        assert str(port) not in r.text and "127.0.0.1" not in r.text
