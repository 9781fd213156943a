"""Issue 13, defect 8 (upstream statuses): an upstream status of 600 or more was retried and
then relayed, which the server cannot write: the client got an empty reply. A status outside
100-599 is now a 502 at once, OpenAI-shaped, on model endpoints and the passthrough alike.
"""

from __future__ import annotations

import httpx
import pytest

from llm_gateway.testing import FakeUpstream

from gateway_support import gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def assert_bad_gateway(r: httpx.Response) -> None:
    assert r.status_code == 502, r.content[:300]
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "upstream_unavailable"
    assert "invalid HTTP status" in error["message"]


@pytest.mark.parametrize("status", [600, 999])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_status_outside_100_to_599_is_a_502_without_retries(
        fake: FakeUpstream, make_gateway, status: int, transport: str) -> None:
    config = gateway_config(fake.url)
    config["upstreams"]["openai"]["transport"] = transport
    gateway = make_gateway(config)
    fake.fail_next(status, times=3)  # enough for every try of the old retry loop
    assert_bad_gateway(httpx.post(f"{gateway.url}/chat/completions", json=CHAT, timeout=10))
    assert fake.calls["POST /v1/chat/completions"] == 1  # not worth retrying: not HTTP
    fake.reset()
    fake.fail_next(status, times=3)
    stream = httpx.post(f"{gateway.url}/chat/completions", json={**CHAT, "stream": True},
                        timeout=10)
    assert_bad_gateway(stream)


def test_the_passthrough_answers_502_too(fake: FakeUpstream, make_gateway) -> None:
    gateway = make_gateway()
    fake.fail_next(600, times=3)
    assert_bad_gateway(httpx.get(f"{gateway.url}/files", timeout=10))
