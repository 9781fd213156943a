"""The attempts a routed call made are recorded as made, however it ended: a raised error (an
unreachable deployment, a request refused on the way out), an error answer, an answer after a
retry, a fallback's answer or error. Through a real gateway and the official SDK: fake OpenAI
upstreams on 127.0.0.1 and ports where nothing listens; the ledger read from its SQLite file,
the request log line from logger llm_gateway.access."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from llm_gateway.accounting.record import TABLE
from llm_gateway.app.logs import JsonFormatter
from llm_gateway.config import parse_config
from llm_gateway.testing.fake_upstream import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import gateway_env
from services import free_port  # nothing listens there: the upstream is down

KEYS = {"LGW_KEY_A": "sk-a", "LGW_KEY_B": "sk-b"}
ACCESS = "llm_gateway.access"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with FakeUpstream(api_key="sk-a") as a, FakeUpstream(api_key="sk-b") as b:
        yield {"a": a, "b": b}


@pytest.fixture(autouse=True)
def _clean(fakes: dict[str, FakeUpstream]) -> None:
    for fake in fakes.values():
        fake.reset()


@pytest.fixture
def start(fakes: dict[str, FakeUpstream], tmp_path: Path,
          caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[list[dict]], GatewayServer]]:
    caplog.set_level(logging.INFO, logger=ACCESS)
    limits = {"retries": {"attempts": 0}, "timeouts": {"connect": 2, "read": 5, "total": 10}}
    upstreams = {name: {"base_url": fake.url, "api_key_env": f"LGW_KEY_{name.upper()}", **limits}
                 for name, fake in fakes.items()}
    for name in ("down1", "down2"):
        upstreams[name] = {"base_url": f"http://127.0.0.1:{free_port()}/v1", **limits}
    # Anthropic refuses n > 1 before anything is sent: a request error raised by a deployment.
    upstreams["claude"] = {"kind": "anthropic", "base_url": "http://127.0.0.1:9/v1", **limits}
    with ExitStack() as running:
        def start(models: list[dict]) -> GatewayServer:
            data = {"upstreams": upstreams, "models": models,
                    "routing": {"cooldown": {"base_seconds": 30}},
                    "storage": {"data_dir": str(tmp_path)},
                    "accounting": {"flush_seconds": 0.05}}
            env = gateway_env(**KEYS)
            return running.enter_context(GatewayServer(parse_config(data, env=env), env=env))

        yield start


def _chat(server: GatewayServer, request_id: str, model: str = "m", **kw):
    client = openai.OpenAI(base_url=server.url, api_key="sk-client", max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": request_id}, **kw)


def _recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture,
              request_id: str) -> tuple[int, int | None]:
    """(the ledger row's attempts, the log line's) for one request, once both are written."""
    deadline = time.monotonic() + 10
    row = line = None
    while time.monotonic() < deadline and (row is None or line is None):
        if (tmp_path / "gateway.db").exists():
            with sqlite3.connect(tmp_path / "gateway.db") as db:
                row = db.execute(f"SELECT attempts FROM {TABLE} WHERE request_id = ?",
                                 (request_id,)).fetchone()
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records
                 if r.name == ACCESS]
        line = next((x for x in lines if x["request_id"] == request_id), None)
        time.sleep(0.05)
    assert row is not None and line is not None, (row, line)
    return row[0], line.get("attempts", 1)  # the line leaves out attempts when it is 1


def test_a_raised_error_records_every_deployment_tried(start, tmp_path, caplog) -> None:
    server = start([{"name": "m", "deployments": [{"backend": "down1"}, {"backend": "down2"}]}])
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(server, "raised")
    assert caught.value.status_code == 502  # both unreachable: the last one's error
    assert _recorded(tmp_path, caplog, "raised") == (2, 2)


def test_a_request_error_raised_after_a_retry_counts_both(start, fakes, tmp_path,
                                                          caplog) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a"}, {"backend": "claude", "priority": 1}]}])
    fakes["a"].fail_next(500)
    with pytest.raises(openai.BadRequestError):
        _chat(server, "refused", n=2)
    assert fakes["a"].calls["POST /v1/chat/completions"] == 1
    assert _recorded(tmp_path, caplog, "refused") == (2, 2)


def test_an_error_answer_counts_every_deployment(start, fakes, tmp_path, caplog) -> None:
    server = start([{"name": "m", "deployments": [{"backend": "a"}, {"backend": "b"}]}])
    fakes["a"].fail_next(500)
    fakes["b"].fail_next(500)
    with pytest.raises(openai.InternalServerError):
        _chat(server, "error-answer")  # both answered 500: the last answer is the error
    assert _recorded(tmp_path, caplog, "error-answer") == (2, 2)


def test_retries_and_fallbacks_count_what_was_tried(start, fakes, tmp_path, caplog) -> None:
    server = start([
        {"name": "m", "strategy": "priority",
         "deployments": [{"backend": "a"}, {"backend": "b", "priority": 1}]},
        {"name": "f", "strategy": "priority", "fallbacks": ["ok"],
         "deployments": [{"backend": "down1"}, {"backend": "down2", "priority": 1}]},
        {"name": "g", "backend": "down1", "fallbacks": ["gone"]},
        {"name": "ok", "backend": "b"}, {"name": "gone", "backend": "down2"}])
    fakes["a"].fail_next(503)
    assert _chat(server, "retried").headers["x-lgw-deployment"] == "b"
    assert _recorded(tmp_path, caplog, "retried") == (2, 2)

    fell = _chat(server, "fell-back", model="f")
    assert fell.headers["x-lgw-fallback"] == "error; model=ok"
    assert _recorded(tmp_path, caplog, "fell-back") == (3, 3)

    with pytest.raises(openai.APIStatusError) as caught:  # the fallback is down too: raised
        _chat(server, "fallback-down", model="g")
    assert caught.value.status_code == 502
    assert _recorded(tmp_path, caplog, "fallback-down") == (2, 2)
