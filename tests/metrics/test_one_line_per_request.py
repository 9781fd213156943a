"""Every request writes exactly one request log line, however it ends, even when the meter
never reports what the answer produced: an observer failing before the meter saw a whole
answer, or an answer that failed between its backend and its relay (faults injected into the
real gateway); and the endings the meter does report (a stream cut without usage, counted; a
client gone) still give one line, not two. Through the real gateway, fake upstreams on
127.0.0.1, the official SDK and httpx."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from llm_gateway.accounting.record import TABLE
from llm_gateway.api import chat
from llm_gateway.app.logs import JsonFormatter
from llm_gateway.config import parse_config
from llm_gateway.metrics import recorder
from llm_gateway.routing.deployment import Deployment
from llm_gateway.testing.fake_upstream import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env

ACCESS = "llm_gateway.access"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key="sk-a", chunk_delay=0.02) as server:
        yield server


@pytest.fixture
def start(fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], GatewayServer]]:
    fake.reset()
    caplog.set_level(logging.INFO, logger=ACCESS)
    monkeypatch.setattr(recorder, "METER_WAIT_SECONDS", 0.5,  # a report that never comes
                        raising=False)
    data = {"upstreams": {"a": {"base_url": fake.url, "api_key_env": "LGW_KEY_A",
                                "retries": {"attempts": 0}}},
            # tpm: the deployment reads a whole answer's usage (an observer before the meter)
            "models": [{"name": "m", "deployments": [{"backend": "a", "tpm": 1_000_000}]}],
            "storage": {"data_dir": str(tmp_path)}, "accounting": {"flush_seconds": 0.05}}
    with ExitStack() as running:
        def start() -> GatewayServer:
            env = gateway_env(LGW_KEY_A="sk-a")
            return running.enter_context(GatewayServer(parse_config(data, env=env), env=env))

        yield start


def _lines(caplog: pytest.LogCaptureFixture, request_id: str, settle: float = 1.5) -> list[dict]:
    """The request's log lines, once one is there and a while longer (a second would show)."""
    deadline = time.monotonic() + 10
    while True:
        found = [json.loads(JsonFormatter().format(r)) for r in caplog.records
                 if r.name == ACCESS and getattr(r, "fields", {}).get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(settle)  # past METER_WAIT_SECONDS: a late second line would be here by now
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records
            if r.name == ACCESS and getattr(r, "fields", {}).get("request_id") == request_id]


def _client(server: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="sk-client", max_retries=0)


def _ask(server: GatewayServer, request_id: str, **kw):
    return _client(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "say something long enough"}],
        extra_headers={"x-request-id": request_id}, **kw)


def test_an_observer_failing_before_the_meter_still_ends_the_answer(
        start, caplog, monkeypatch, tmp_path) -> None:
    server = start()

    def broken(self, usage) -> None:
        raise RuntimeError("injected: the deployment's tpm count failed")

    monkeypatch.setattr(Deployment, "used", broken)
    with pytest.raises(openai.InternalServerError):
        _ask(server, "observer-failed")
    [line] = _lines(caplog, "observer-failed", settle=0.1)
    assert (line["status"], line["model"], line["backend"]) == (500, "m", "a")
    # Every observer was told the answer ended: the deployment is not left busy...
    [group] = Admin(server)("GET", "/admin/deployments").json()["data"]
    assert group["deployments"][0]["inflight"] == 0
    # ... and the meter reported: the ledger has the request.
    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            row = db.execute(f"SELECT outcome FROM {TABLE} WHERE request_id = ?",
                             ("observer-failed",)).fetchone()
        time.sleep(0.05)
    assert row == ("error",)


def test_an_answer_never_relayed_still_has_its_line(start, caplog, monkeypatch) -> None:
    server = start()

    def broken(result):
        raise RuntimeError("injected: the answer fails before its relay")

    monkeypatch.setattr(chat, "to_response", broken)
    with pytest.raises(openai.InternalServerError):
        _ask(server, "never-relayed")
    [line] = _lines(caplog, "never-relayed")
    assert (line["status"], line["model"], line["backend"]) == (500, "m", "a")
    # The edge ended the unsent answer: the line has what it used, as the ledger does.
    assert line["prompt_tokens"] > 0 and line["completion_tokens"] > 0


def test_endings_the_meter_reports_give_one_line_each(start, fake, caplog) -> None:
    server = start()
    assert "".join(c.choices[0].delta.content or "" for c in _ask(server, "streamed",
                                                                   stream=True) if c.choices)
    fake.drop_next_stream(after_chunks=2)  # cut: no usage, no [DONE]; the tokens are counted
    with pytest.raises(openai.APIError):
        for _ in _ask(server, "cut", stream=True):
            pass
    with httpx.stream("POST", f"{server.url}/chat/completions", headers={
            "x-request-id": "gone"}, json={"model": "m", "stream": True, "messages": [
                {"role": "user", "content": "a long answer please " * 20}]}) as reply:
        next(reply.iter_raw())  # the client leaves after its first block
    lines = {rid: _lines(caplog, rid) for rid in ("streamed", "cut", "gone")}
    assert {rid: len(found) for rid, found in lines.items()} == {
        "streamed": 1, "cut": 1, "gone": 1}
    assert lines["streamed"][0]["completion_tokens"] > 0
    assert lines["cut"][0]["completion_tokens"] > 0  # counted, not reported
