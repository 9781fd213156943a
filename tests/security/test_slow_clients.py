"""Issue 13, defect 7: half-sent requests were never timed out: 300 connections holding partial
headers or bodies all stayed open after 50 s.

Now a request's headers must be complete within `server.header_timeout_seconds` of its first
byte (uvicorn has no such limit: `app/client_timeouts.py`, used by `llm-gateway serve`), and
each next piece of a body must come within `server.body_timeout_seconds`, and the whole body
at `server.body_min_bytes_per_second` on average after that first wait. Past any, the
client gets an OpenAI-shaped 408 (or, when the answer went out before the body was read, no
more), the connection is closed, and `llm_gateway_slow_clients_total{phase}` counts it. Raw
sockets send the partial requests.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from llm_gateway.app.factory import create_app
from llm_gateway.config import ConfigError, parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.threaded import ThreadedServer

from gateway_support import ENV, gateway_config
from slow_client_support import (
    assert_408,
    connect,
    serve,
    trickle,
    until_closed,
    until_closed_or_answered,
)

PROTOCOLS = "llm_gateway.app.client_timeouts"
LIMIT = 1.0  # the configured timeouts, seconds
RATE = 20.0  # the configured minimum body rate, bytes a second
SLACK = 4.0  # how much later than the limit a connection may close (a loaded CI machine)
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def slow_clients(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.findall(r'^llm_gateway_slow_clients_total\{phase="(\w+)"\} (\S+)$', text, re.M)
    return {phase: float(value) for phase, value in found}


def config(fake_url: str) -> dict:
    data = gateway_config(fake_url)
    data["server"].update(header_timeout_seconds=LIMIT, body_timeout_seconds=LIMIT,
                          body_min_bytes_per_second=RATE)
    return data


@pytest.mark.parametrize("key", ["header_timeout_seconds", "body_timeout_seconds"])
def test_a_bad_timeout_is_refused_naming_its_key(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"server\.{key}: must be > 0"):
        parse_config(gateway_config("http://127.0.0.1:1/v1", server={key: 0}))


def test_a_negative_minimum_rate_is_refused_and_zero_turns_it_off() -> None:
    key = "body_min_bytes_per_second"
    with pytest.raises(ConfigError, match=rf"server\.{key}: must be >= 0"):
        parse_config(gateway_config("http://127.0.0.1:1/v1", server={key: -1}))
    off = parse_config(gateway_config("http://127.0.0.1:1/v1", server={key: 0}))
    assert off.server.body_min_bytes_per_second == 0


# --- headers (uvicorn protocols) ----------------------------------------------------------------


@pytest.fixture(params=["HttpToolsClientTimeouts", "H11ClientTimeouts"], ids=["httptools", "h11"])
def served(request, fake: FakeUpstream) -> Iterator[int]:
    """The gateway under uvicorn with a header-timeout protocol; yields its port."""
    app = create_app(parse_config(config(fake.url), env=ENV), env=ENV)
    runner = ThreadedServer(app, name="gateway", lifespan="on",
                            http=getattr(importlib.import_module(PROTOCOLS), request.param),
                            timeout_graceful_shutdown=2)
    port = runner.start()
    yield port
    runner.stop(timeout=10)


def test_partial_headers_get_a_408_and_are_closed(served: int) -> None:
    port = served
    partial = [connect(port, HEAD[:n]) for n in (1, 20, len(HEAD))]  # a byte, a line, all but
    silent = connect(port)  # nothing at all: closed without an answer, like an idle one
    # Headers sent slowly but in time: answered as usual.
    steady = connect(port, HEAD[:30])
    time.sleep(LIMIT / 2)
    steady.sendall(HEAD[30:] + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT)
    assert until_closed_or_answered(steady).startswith(b"HTTP/1.1 200 ")
    for sock in partial:
        assert_408(until_closed(sock, LIMIT + SLACK))
    assert until_closed(silent, LIMIT + SLACK) == b""
    assert slow_clients(f"http://127.0.0.1:{port}")["headers"] == 3


def test_the_next_request_on_a_kept_alive_connection_is_timed_too(served: int) -> None:
    sock = connect(served, HEAD + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT)
    assert until_closed_or_answered(sock, keep_open=True).startswith(b"HTTP/1.1 200 ")
    sock.sendall(HEAD)  # the second request's head, never finished
    assert_408(until_closed(sock, LIMIT + SLACK))


def test_a_body_answered_early_still_has_to_keep_coming(served: int) -> None:
    """A 404 goes out before the body is read; uvicorn then read the rest with no timer (each
    byte cancelled the keep-alive one), so a byte now and then held the connection."""
    sock = connect(served, b"POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{")
    sock.settimeout(10)
    assert sock.recv(65536).startswith(b"HTTP/1.1 404 ")
    time.sleep(LIMIT / 4)
    sock.sendall(b"x")
    assert until_closed(sock, LIMIT + SLACK) == b""
    assert slow_clients(f"http://127.0.0.1:{served}")["body"] == 1


def test_a_body_answered_early_is_held_to_the_minimum_rate_too(served: int) -> None:
    """A byte every quarter of the limit kept the connection for as long as the body's length
    allowed (this one: 7 hours)."""
    head = b"POST /nowhere HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\n{"
    sock = connect(served, head)
    assert until_closed_or_answered(sock, keep_open=True).startswith(b"HTTP/1.1 404 ")
    trickle(sock, b"x" * 1000, LIMIT / 4)
    assert until_closed(sock, LIMIT + SLACK + 1) == b""
    assert slow_clients(f"http://127.0.0.1:{served}")["body"] == 1


# --- bodies (the app) ---------------------------------------------------------------------------


def test_a_stalled_body_gets_a_408_and_is_closed(fake: FakeUpstream, make_gateway) -> None:
    gateway = make_gateway(config(fake.url))
    port = gateway.port
    stalled = [
        connect(port, HEAD + b"Content-Length: %d\r\n\r\n" % len(CHAT) + CHAT[:10]),
        connect(port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\n" + CHAT[:5] + b"\r\n"),
        # The passthrough streams uploads upstream as they come: a stall there is timed too.
        connect(port, b"POST /v1/files HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n"
                      b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 100),
    ]
    for sock in stalled:
        assert_408(until_closed(sock, LIMIT + SLACK))
    assert slow_clients(gateway.base)["body"] == 3


def test_a_body_trickled_below_the_minimum_rate_gets_a_408(
        fake: FakeUpstream, make_gateway) -> None:
    """Each byte came within `body_timeout_seconds`, so a body could take as long as its length
    allowed: at a byte every quarter second, this 2 KB chat for 8 minutes, and a 16 MiB one
    for 48 days. Now it must average `body_min_bytes_per_second` after the first wait."""
    gateway = make_gateway(config(fake.url))
    body = orjson.dumps({"model": "gpt-4o-mini",
                         "messages": [{"role": "user", "content": "a" * 2000}]})
    sock = connect(gateway.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
    trickle(sock, body, LIMIT / 4)
    answer = until_closed(sock, LIMIT + SLACK + 1)
    assert_408(answer)
    assert b"slower than 20 bytes a second" in answer
    assert b"server.body_min_bytes_per_second" in answer
    assert slow_clients(gateway.base)["body"] == 1


def test_a_body_at_the_minimum_rate_is_served(fake: FakeUpstream, make_gateway) -> None:
    """The rate is an average over the body, after the first wait: a fast client with one
    pause as long as the first wait still gets through."""
    gateway = make_gateway(config(fake.url))
    sock = connect(gateway.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(CHAT))
    sock.sendall(CHAT[:40])
    time.sleep(LIMIT * 0.8)
    sock.sendall(CHAT[40:])
    assert until_closed_or_answered(sock).startswith(b"HTTP/1.1 200 ")


def test_the_limit_is_between_pieces_not_on_the_whole_body(
        fake: FakeUpstream, make_gateway) -> None:
    gateway = make_gateway(config(fake.url))
    sock = connect(gateway.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(CHAT))
    for i in range(0, len(CHAT), len(CHAT) // 4 + 1):  # over 2 s, a piece every 0.5 s
        time.sleep(LIMIT / 2)
        sock.sendall(CHAT[i:i + len(CHAT) // 4 + 1])
    assert until_closed_or_answered(sock).startswith(b"HTTP/1.1 200 ")
    # Once the body is in, the timer stops: a stream with longer gaps than it goes on.
    with FakeUpstream(chunk_delay=0.5) as slow:
        short = config(slow.url)
        short["server"]["body_timeout_seconds"] = 0.2
        streaming = make_gateway(short)
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": "a"}]}
        r = httpx.post(f"{streaming.url}/chat/completions", json=body, timeout=20)
        assert r.text.rstrip().endswith("data: [DONE]")


# --- `llm-gateway serve` ------------------------------------------------------------------------


def flood(port: int, count: int) -> list[socket.socket]:
    """``count`` partial heads and ``count`` stalled bodies."""
    heads = [connect(port, HEAD) for _ in range(count)]
    bodies = [connect(port, HEAD + b"Content-Length: 100\r\n\r\n{") for _ in range(count)]
    return heads + bodies


def test_serve_with_several_workers_drops_300_slow_clients(tmp_path) -> None:
    with FakeUpstream() as fake:
        proc, port = serve(tmp_path, fake.url,
                           f"header_timeout_seconds: {LIMIT}, body_timeout_seconds: {LIMIT}",
                           "--workers", "2")
        try:
            socks = flood(port, 150)
            for sock in socks:
                assert_408(until_closed(sock, LIMIT + SLACK + 2))
            counted = slow_clients(f"http://127.0.0.1:{port}")  # every process's, summed
            assert counted == {"headers": 150, "body": 150}
        finally:
            proc.terminate()
            proc.wait(20)


def test_serve_drops_half_sent_headers_by_default(tmp_path) -> None:
    """No setting: the default (10 s) applies."""
    with FakeUpstream() as fake:
        proc, port = serve(tmp_path, fake.url, "shutdown_grace_seconds: 5")
        try:
            socks = [connect(port, HEAD) for _ in range(20)]
            started = time.monotonic()
            for sock in socks:
                assert_408(until_closed(sock, 10 + SLACK - (time.monotonic() - started)))
        finally:
            proc.terminate()
            proc.wait(20)



def test_a_head_past_its_size_bound_is_refused_and_closed(served: int, request) -> None:
    """httptools takes headers of any size (h11 stops at 16 KiB by itself): a fast client
    could send megabytes of them within the header timeout."""
    from llm_gateway.app.client_timeouts import MAX_HEAD_BYTES

    sock = connect(served, HEAD)
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    sent = len(HEAD)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent <= 4 * MAX_HEAD_BYTES:
            sock.sendall(filler)
            sent += len(filler)
    answer = until_closed(sock, SLACK)
    if request.node.callspec.id == "httptools":
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert orjson.loads(body)["error"]["code"] == "request_header_fields_too_large"
    else:
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # h11's own bound
