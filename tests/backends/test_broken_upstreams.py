"""Upstreams that do not speak HTTP properly, and a client header httpx cannot send: each is a
clear OpenAI-shaped error (or an error event mid-stream), never a 500; both transports.

The broken upstream is a real socket server on 127.0.0.1 that reads a request and writes the
bytes it was given, then closes."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, gateway_config

MAX_ANSWER = 64 * 1024
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class BrokenUpstream:
    """Answers every request with `answer` (raw bytes), then closes the connection; or, with
    `later`, writes that too after a pause and then holds the connection open, silent."""

    def __init__(self) -> None:
        self.answer = b""
        self.later = b""
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        answer, later = self.answer, self.later
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                more = conn.recv(65536)
                if not more:
                    break
                head += more
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = head.partition(b"\r\n\r\n")[2]
            while len(body) < length:
                more = conn.recv(65536)
                if not more:
                    break
                body += more
            self.requests += 1
            # The gateway may hang up while the answer still goes out (it read enough).
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                conn.sendall(answer)
                if later:
                    time.sleep(0.3)
                    conn.sendall(later)
                    time.sleep(8)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def broken() -> Iterator[BrokenUpstream]:
    server = BrokenUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module", params=["aiohttp", "httpx"])
def gw(request, broken) -> Iterator[GatewayServer]:
    config = gateway_config(broken.url)
    config["upstreams"]["openai"]["transport"] = request.param
    config["upstreams"]["openai"]["retries"] = {"attempts": 0}
    config["upstreams"]["openai"]["timeouts"] = {"connect": 2, "read": 1, "total": 10}
    config["server"]["max_answer_bytes"] = MAX_ANSWER
    server = GatewayServer(parse_config(config, env=ENV), env=ENV).start()
    yield server
    server.stop()


def expect_error(answer: httpx.Response, status: int) -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("answer", [
    b"GARBAGE\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 200_000 + b"\r\ncontent-length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
], ids=["status-line", "huge-header", "two-lengths"])
def test_an_answer_that_is_not_http_is_a_502(gw, broken, answer):
    broken.answer = answer
    expect_error(httpx.post(gw.url + "/chat/completions", json=CHAT, timeout=20), 502)


def test_a_body_that_says_gzip_and_is_not_is_a_502_or_an_error_event(gw, broken):
    broken.answer = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-encoding: gzip\r\ncontent-length: 11\r\n\r\nnot gzip!!!")
    expect_error(httpx.post(gw.url + "/chat/completions", json=CHAT, timeout=20), 502)
    event = b'data: {"choices": []}\n\n'
    body = gzip.compress(event)[:-8] + b"garbage!"  # a broken trailer: decoding fails at the end
    broken.answer = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    streamed = httpx.post(gw.url + "/chat/completions", json={**CHAT, "stream": True},
                          timeout=20)
    assert streamed.status_code == 200
    assert "upstream broke off the stream: DecodingError" in streamed.text


def test_a_passthrough_answer_cut_short_is_a_502(gw, broken):
    broken.answer = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{\"object\": \"li")
    error = expect_error(httpx.get(gw.url + "/files", timeout=20), 502)
    assert error["message"] == "upstream 'openai' broke off the response"


def test_a_header_value_past_ascii_is_a_400_not_sent(gw, broken):
    before = broken.requests
    answer = httpx.post(gw.url + "/chat/completions", json=CHAT, timeout=20,
                        headers=[(b"x-note", "caf\xe9".encode("latin-1"))])
    assert expect_error(answer, 400)["code"] == "invalid_header"
    assert broken.requests == before


def test_a_malformed_chunk_mid_stream_does_not_hang_the_stream(gw, broken):
    # After a broken chunk aiohttp waited for the body's end forever: read and total timeouts
    # alike were ignored, and the client hung until it gave up.
    broken.answer = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n"
                     b'1a\r\ndata: {"choices": []}\n\n\r\n')
    broken.later = b"zz\r\nnot a chunk"
    try:
        started = time.monotonic()
        answer = httpx.post(gw.url + "/chat/completions", json={**CHAT, "stream": True},
                            timeout=20)
        assert time.monotonic() - started < 6  # the read timeout (1 s), not the hold (8 s)
        if answer.status_code == 200:  # the event that came, then an error event
            last = answer.text.strip().split("\n\n")[-1]
            code = json.loads(last.removeprefix("data: "))["error"]["code"]
            # aiohttp stalls (then the read timeout), httpx sees the chunk is not one
            assert code in ("upstream_timeout", "upstream_unavailable")
        else:
            assert expect_error(answer, 504)["code"] == "upstream_timeout"
    finally:
        broken.later = b""


def _json_answer(body: bytes, *, length: bool = True, gzipped: bool = False) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    if gzipped:
        body = gzip.compress(body)
        head += b"content-encoding: gzip\r\n"
    if length:
        return head + b"content-length: %d\r\n\r\n" % len(body) + body
    return head + b"connection: close\r\n\r\n" + body  # ends when the connection does


def _big_completion(size: int) -> bytes:
    text = "x" * size
    return json.dumps({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}}).encode()


@pytest.mark.parametrize("how", ["content-length", "until-close", "gzip-bomb"])
def test_an_answer_past_max_answer_bytes_is_a_502_that_says_so(gw, broken, how):
    body = _big_completion(4 * MAX_ANSWER)
    broken.answer = _json_answer(body, length=how != "until-close", gzipped=how == "gzip-bomb")
    if how == "gzip-bomb":
        assert len(broken.answer) < MAX_ANSWER  # small on the wire, large once inflated
    error = expect_error(httpx.post(gw.url + "/chat/completions", json=CHAT, timeout=20), 502)
    assert error["code"] == "upstream_answer_too_large"
    assert str(MAX_ANSWER) in error["message"] and "server.max_answer_bytes" in error["message"]


def test_an_answer_within_max_answer_bytes_is_relayed_whole(gw, broken):
    body = _big_completion(MAX_ANSWER // 2)
    for length in (True, False):
        broken.answer = _json_answer(body, length=length)
        answer = httpx.post(gw.url + "/chat/completions", json=CHAT, timeout=20)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "x" * (MAX_ANSWER // 2)


def test_a_model_list_past_its_bound_is_not_read(gw, broken):
    # 8 MiB at most (http_upstream.MAX_MODEL_LIST_BYTES): the listing is dropped, the
    # configured names are still listed.
    models = [{"id": f"gpt-listed-{i:07d}", "object": "model", "created": 0,
               "owned_by": "x" * 64} for i in range(90_000)]
    body = json.dumps({"object": "list", "data": models}).encode()
    assert len(body) > 8 * 1024 * 1024
    broken.answer = _json_answer(body, length=False)
    answer = httpx.get(gw.url + "/models", timeout=30)
    assert answer.status_code == 200, answer.text
    ids = {m["id"] for m in answer.json()["data"]}
    assert "gpt-4o-mini" in ids and "gpt-listed-0000000" not in ids
