"""Both upstream transports (aiohttp, httpx) behave the same behind the Backend seam."""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest

from gateway_support import gateway_config


@pytest.fixture(params=["aiohttp", "httpx"])
def gw(request, make_gateway, fake):
    config = gateway_config(fake.url)
    config["upstreams"]["openai"]["transport"] = request.param
    return make_gateway(config)


def test_chat_both_modes(gw, fake):
    client = openai.OpenAI(base_url=gw.url, api_key="x", max_retries=0)
    msgs = [{"role": "user", "content": "same answer"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, stream=True) if c.choices)
    assert reply.choices[0].message.content == streamed == "Echo: same answer"


def test_retry_and_streamed_upload(gw, fake):
    fake.fail_next(500)
    r = httpx.post(gw.url + "/chat/completions",
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and fake.calls["POST /v1/chat/completions"] == 2
    chunks = [bytes([i]) * 50_000 for i in range(30)]
    r = httpx.post(gw.url + "/uploads/up_1/parts", content=iter(chunks))
    assert r.json()["sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_drop_mid_stream(gw, fake):
    fake.drop_next_stream(after_chunks=1)
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": "a b c d"}]}
    text = httpx.post(gw.url + "/chat/completions", json=body).text
    assert '"error"' in text and "[DONE]" not in text


def test_client_disconnect_closes_the_upstream_stream(gw, fake):
    fake.chunk_delay = 0.1
    try:
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": " ".join(["w"] * 40)}]}
        for n in range(3):
            with httpx.stream("POST", gw.url + "/chat/completions", json=body) as r:
                next(r.iter_bytes())
            assert fake.wait_for(lambda n=n: fake.disconnects == n + 1, timeout=3.0)
    finally:
        fake.chunk_delay = 0.0


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_aborted_clients_do_not_leak_pooled_connections(make_gateway, fake, transport):
    import random
    import socket
    import struct

    config = gateway_config(fake.url)
    upstream = config["upstreams"]["openai"]
    upstream.update(transport=transport, max_connections=4)
    upstream["timeouts"] = {"connect": 1, "read": 5, "total": 10}
    gw = make_gateway(config)
    body = (b'{"model": "gpt-4o-mini", "stream": true, "messages": '
            b'[{"role": "user", "content": "a b c d e f g h"}]}')
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
               b"Content-Type: application/json\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
    rng = random.Random(7)
    for _ in range(24):  # far more than the pool holds
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(request)
            if rng.random() < 0.5:
                sock.recv(1)
            # Linger 0: close with a reset, as a killed client does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # With leaked connections the pool would be exhausted and this would time out.
    r = httpx.post(gw.url + "/chat/completions", timeout=5, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still"}]})
    assert r.status_code == 200, r.text
