"""Issue 13, defect 10: an upstream that sends `[DONE]` and then stalls held the client until the
read timeout. `[DONE]` now ends the client's response at once and lets the upstream go.
"""

from __future__ import annotations

import httpx
import openai

from llm_gateway.testing import FakeUpstream

from gateway_support import gateway_config

CHAT = {"model": "gpt-4o-mini", "stream": True,
        "messages": [{"role": "user", "content": "one two three"}]}


def slow_read_config(fake_url: str) -> dict:
    config = gateway_config(fake_url)
    # A read timeout far beyond the client's own: only [DONE] can end the stream in time.
    config["upstreams"]["openai"]["timeouts"] = {"connect": 2, "read": 120, "total": 300}
    return config


def test_done_ends_the_clients_stream_and_releases_the_upstream(
        fake: FakeUpstream, make_gateway) -> None:
    gateway = make_gateway(slow_read_config(fake.url))
    fake.stall_after_done_next()
    with httpx.stream("POST", f"{gateway.url}/chat/completions", json=CHAT,
                      timeout=httpx.Timeout(10, read=8)) as r:
        assert r.status_code == 200
        body = r.read()  # ReadTimeout here: the gateway waited for the stalled upstream
    assert body.endswith(b"data: [DONE]\n\n")
    assert body.count(b"[DONE]") == 1 and b'"error"' not in body
    # The upstream connection was closed, not left open until its read timeout.
    assert fake.wait_for(lambda: fake.disconnects == 1, timeout=5)


def test_an_sdk_client_gets_the_whole_answer(fake: FakeUpstream, make_gateway) -> None:
    # The SDK stops reading at [DONE] itself: this one guards the answer, not the wait.
    gateway = make_gateway(slow_read_config(fake.url))
    fake.stall_after_done_next()
    client = openai.OpenAI(base_url=gateway.url, api_key="sk-x", max_retries=0, timeout=8)
    chunks = list(client.chat.completions.create(**CHAT))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three"
