"""A worker bounds its clients as the gateway does: a worker pod may be reached without the
gateway in front. Before, its body was read whole with no size bound, its head with no time
or size bound, and a body that stalled or trickled held the connection as long as the client
liked. Raw sockets send what no client library would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import orjson
import pytest

from slow_client_support import (
    assert_408,
    connect,
    trickle,
    until_closed,
    until_closed_or_answered,
)
from worker_support import WorkerProcess, serving, user

LIMIT = 1.0  # --header-timeout-seconds and --body-timeout-seconds
RATE = 20.0  # --body-min-bytes-per-second
MAX_BODY = 4096  # --max-body-bytes
SLACK = 4.0  # how much later than the limit a connection may close (a loaded CI machine)
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def bounded() -> Iterator[WorkerProcess]:
    yield from serving("--parallel", "1", "--n-ctx", "512", "--max-body-bytes", str(MAX_BODY),
                       "--header-timeout-seconds", str(LIMIT),
                       "--body-timeout-seconds", str(LIMIT),
                       "--body-min-bytes-per-second", str(RATE))


def chat(content: str) -> bytes:
    return orjson.dumps({"model": "m", "messages": user(content), "max_tokens": 2})


def test_a_body_past_max_body_bytes_is_a_413(bounded: WorkerProcess) -> None:
    url = bounded.url + "/v1/chat/completions"
    ok = httpx.post(url, content=chat("hi"), timeout=60)
    assert ok.status_code == 200, ok.text
    big = chat("a" * MAX_BODY)
    declared = httpx.post(url, content=big, timeout=60)

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused once the count passes it
        yield from (big[i:i + 1000] for i in range(0, len(big), 1000))

    counted = httpx.post(url, content=chunked(), timeout=60)
    for refused in (declared, counted):
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert error["code"] == "request_too_large" and str(MAX_BODY) in error["message"]


def test_a_head_cut_short_gets_a_408(bounded: WorkerProcess) -> None:
    assert_408(until_closed(connect(bounded.port, HEAD), LIMIT + SLACK))


def test_a_head_past_its_size_bound_is_a_431(bounded: WorkerProcess) -> None:
    sock = connect(bounded.port, HEAD)
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(300):  # 300 KB of headers
            sock.sendall(filler)
    answer = until_closed(sock, SLACK)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_stalled_body_gets_a_408(bounded: WorkerProcess) -> None:
    body = chat("hi")
    sock = connect(bounded.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    assert_408(until_closed(sock, LIMIT + SLACK))


def test_a_trickled_body_gets_a_408_naming_the_flag(bounded: WorkerProcess) -> None:
    body = chat("a" * 2000)
    sock = connect(bounded.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
    trickle(sock, body, LIMIT / 4)  # each byte in time; 4 bytes a second on average
    answer = until_closed(sock, LIMIT + SLACK + 1)
    assert_408(answer)
    assert b"--body-min-bytes-per-second" in answer


def test_a_body_answered_early_must_keep_coming(bounded: WorkerProcess) -> None:
    sock = connect(bounded.port, b"POST /nowhere HTTP/1.1\r\nHost: w\r\nContent-Length: 100000"
                                 b"\r\n\r\n{")
    assert until_closed_or_answered(sock, keep_open=True).startswith(b"HTTP/1.1 404 ")
    trickle(sock, b"x" * 1000, LIMIT / 4)
    assert until_closed(sock, LIMIT + SLACK + 1) == b""


def test_a_body_in_pieces_within_the_bounds_is_served(bounded: WorkerProcess) -> None:
    body = chat("hi")
    sock = connect(bounded.port, HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
    sock.sendall(body[:40])
    sock.settimeout(LIMIT * 0.8)
    with contextlib.suppress(TimeoutError):
        sock.recv(1)  # nothing yet: a pause, as long as most of the first wait
    sock.sendall(body[40:])
    assert until_closed_or_answered(sock).startswith(b"HTTP/1.1 200 ")
