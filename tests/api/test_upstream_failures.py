"""Upstream failures: retries before the first byte, errors passed through, timeouts, drops."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from gateway_support import gateway_config

MESSAGES = [{"role": "user", "content": "ping"}]


def test_5xx_before_first_byte_is_retried(client, fake):
    fake.fail_next(500, times=2)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Echo: ping"
    assert fake.calls["POST /v1/chat/completions"] == 3


def test_5xx_after_retries_passes_through(client, fake):
    fake.fail_next(503, times=5, message="upstream overloaded")
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 503
    assert err.value.body["message"] == "upstream overloaded"
    assert fake.calls["POST /v1/chat/completions"] == 3  # 1 try + 2 retries


def test_stream_5xx_is_retried_too(client, fake):
    fake.fail_next(502, times=1)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: ping"
    assert fake.calls["POST /v1/chat/completions"] == 2


def test_429_passes_through_with_retry_after_and_is_not_retried(client, fake):
    fake.fail_next(429, retry_after="7", message="slow down")
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.response.headers["retry-after"] == "7"
    assert err.value.body["code"] == "rate_limit_exceeded"
    assert fake.calls["POST /v1/chat/completions"] == 1


def test_4xx_body_passes_through_untouched(client, fake):
    fake.fail_next(400, message="bad thing")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert err.value.body["message"] == "bad thing"


def test_slow_first_byte_becomes_504(make_gateway, fake):
    config = gateway_config(fake.url)
    config["upstreams"]["openai"]["timeouts"] = {"connect": 1, "read": 0.3, "total": 5}
    gw = make_gateway(config)
    fake.delay_next(2.0)
    r = httpx.post(gw.url + "/chat/completions", json={"model": "gpt-4o-mini",
                                                       "messages": MESSAGES})
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout"


def test_total_timeout_becomes_504(make_gateway, fake):
    config = gateway_config(fake.url)
    config["upstreams"]["openai"]["timeouts"] = {"connect": 1, "read": 5, "total": 0.3}
    gw = make_gateway(config)
    fake.delay_next(1.5)
    started = time.monotonic()
    r = httpx.post(gw.url + "/chat/completions", json={"model": "gpt-4o-mini",
                                                       "messages": MESSAGES})
    assert r.status_code == 504
    assert time.monotonic() - started < 1.4


def test_unreachable_upstream_is_502_after_retries(make_gateway, fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nothing listens here once closed
    config = gateway_config(f"http://127.0.0.1:{dead_port}/v1")
    gw = make_gateway(config)
    r = httpx.post(gw.url + "/chat/completions", json={"model": "gpt-4o-mini",
                                                       "messages": MESSAGES})
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_unavailable"


def test_drop_mid_stream_ends_with_an_error_event(gateway, fake):
    fake.drop_next_stream(after_chunks=2)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", gateway.url + "/chat/completions", json=body) as r:
        assert r.status_code == 200
        text = r.read().decode()
    assert text.count("data: ") >= 3
    assert '"error"' in text.split("data: ")[-1]
    assert "[DONE]" not in text
    # Not retried: the stream had begun.
    assert fake.calls["POST /v1/chat/completions"] == 1


def test_sdk_sees_mid_stream_drop_as_an_error(client, fake):
    fake.drop_next_stream(after_chunks=2)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                stream=True):
            pass


def test_client_disconnect_cancels_the_upstream_stream(make_gateway, fake):
    from llm_gateway.testing import FakeUpstream

    with FakeUpstream(chunk_delay=0.2) as slow:
        config = gateway_config(slow.url)
        config["upstreams"]["openai"]["api_key_env"] = None
        gw = make_gateway(config)
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": " ".join(["w"] * 50)}]}
        with httpx.stream("POST", gw.url + "/chat/completions", json=body) as r:
            next(r.iter_bytes())
        assert slow.wait_for(lambda: slow.disconnects == 1, timeout=3.0)
