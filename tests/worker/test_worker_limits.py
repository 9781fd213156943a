"""Limits: context overflow, a full queue, and clients that go away mid-generation."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from worker_support import WorkerProcess, user

LONG = {"max_tokens": 2000, "logit_bias": {"2": -100}}  # would run for half a minute


def test_context_overflow_is_a_400_and_the_worker_goes_on(small_worker):
    client = small_worker.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="m", messages=user("word " * 300), max_tokens=5)
    assert err.value.body["code"] == "context_length_exceeded"
    assert err.value.body["param"] == "messages"
    assert "256" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="m", prompt="word " * 300, max_tokens=5)
    assert err.value.body["code"] == "context_length_exceeded"
    assert err.value.body["param"] == "prompt"
    r = client.chat.completions.create(model="m", messages=user("hi"), max_tokens=3)
    assert r.choices[0].message.content is not None
    assert small_worker.health()["status"] == "ok"


def test_generation_stops_when_the_context_is_full(small_worker):
    r = small_worker.client().completions.create(model="m", prompt="word " * 230, **LONG)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == 256


class _Stream:
    """An SSE response read a little at a time, then dropped (closing the connection)."""

    def __init__(self, url: str, body: dict) -> None:
        self.client = httpx.Client(timeout=30)
        self.response = self.client.send(self.client.build_request("POST", url, json=body),
                                         stream=True)
        self.lines = self.response.iter_lines()

    def until_content(self) -> None:
        """Read until the first generated token: the job is running, not waiting."""
        for line in self.lines:
            if '"content":"' in line and '"content":""' not in line:
                return

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_queue_full_is_a_429_with_retry_after(small_worker):
    url = small_worker.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True, **LONG}
    opened = []
    try:
        opened.append(_Stream(url, body))  # runs
        opened[0].until_content()
        opened.append(_Stream(url, body))  # waits: the queue holds one
        assert opened[1].response.status_code == 200
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
        assert small_worker.health()["queue_depth"] == 1
    finally:
        for stream in opened:
            stream.close()
    small_worker.wait_idle(within=2)


def test_stream_disconnect_stops_generation_at_once(worker):
    url = worker.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True, **LONG}
    stream = _Stream(url, body)
    try:
        stream.until_content()
        assert worker.health()["active"] == 1
    finally:
        stream.close()
    assert worker.wait_idle(within=1.0) < 1.0


def test_non_stream_disconnect_cancels_the_job(worker):
    url = worker.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), **LONG}

    def post() -> None:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, timeout=httpx.Timeout(30, read=0.5))

    thread = threading.Thread(target=post)
    thread.start()
    thread.join()
    assert worker.wait_idle(within=1.5) < 1.5


def test_sigterm_lets_a_running_stream_finish():
    server = WorkerProcess().start()
    try:
        body = {"model": "m", "messages": user("Tell me a story."), "stream": True,
                "max_tokens": 30, "logit_bias": {"2": -100}}
        stream = _Stream(server.url + "/v1/chat/completions", body)
        try:
            stream.until_content()
            server.proc.terminate()
            rest = [line for line in stream.lines if line]
            assert rest[-1] == "data: [DONE]"
            assert server.proc.wait(10) == 0
        finally:
            stream.close()
    finally:
        server.stop()
