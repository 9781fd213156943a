"""The request log: one structured line per request, no keys, no prompts unless asked."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

from llm_gateway.app.logs import JsonFormatter, TextFormatter
from llm_gateway.call import Result
from llm_gateway.metrics.access_log import AccessLog
from llm_gateway.metrics.recorder import Recorder
from llm_gateway.metrics.registry import Capped, ModelLabel

from gateway_support import UPSTREAM_KEY, gateway_config

CLIENT_KEY = "sk-client-key-do-not-log"
PROMPT = "tell me about the purple walrus"
ACCESS = "llm_gateway.access"


def _chat(gw, **extra) -> httpx.Response:
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY,
               **extra.pop("headers", {})}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], **extra}
    r = httpx.post(f"{gw.url}/chat/completions", json=body, headers=headers)
    assert r.status_code == 200
    return r


def _access_lines(caplog, count: int) -> list[dict]:
    """The request lines as the JSON formatter writes them, once ``count`` have arrived."""
    deadline = time.monotonic() + 5
    while True:  # a line is written just after the response's last byte
        records = [r for r in caplog.records if r.name == ACCESS]
        if len(records) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return [json.loads(JsonFormatter().format(r)) for r in records]


def test_one_line_per_request_with_the_essentials(caplog, make_gateway):
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = make_gateway()
    r = _chat(gw, headers={"x-request-id": "req-log-1"})
    with httpx.stream("POST", f"{gw.url}/chat/completions", json={
            "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "stream it"}]}) as s:
        s.read()
    httpx.get(f"{gw.base}/healthz")  # probes are not logged
    [plain, streamed] = _access_lines(caplog, 2)
    usage = r.json()["usage"]
    assert plain["request_id"] == "req-log-1" == r.headers["x-request-id"]
    assert plain["message"] == "POST /v1/chat/completions 200"
    assert (plain["method"], plain["path"], plain["status"]) == (
        "POST", "/v1/chat/completions", 200)
    assert (plain["team"], plain["model"], plain["backend"]) == ("none", "gpt-4o-mini", "openai")
    assert plain["prompt_tokens"] == usage["prompt_tokens"]
    assert plain["completion_tokens"] == usage["completion_tokens"]
    assert plain["duration_ms"] > 0 and plain["level"] == "info"
    assert streamed["request_id"] == s.headers["x-request-id"]
    assert streamed["stream"] is True and streamed["ttft_ms"] <= streamed["duration_ms"]
    assert streamed["completion_tokens"] > 0


def test_no_key_and_no_prompt_at_the_default_level(caplog, make_gateway):
    caplog.set_level(logging.INFO)  # everything the gateway logs at the default level
    gw = make_gateway()
    answer = _chat(gw).json()["choices"][0]["message"]["content"]
    _access_lines(caplog, 1)
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    text += "\n".join(TextFormatter().format(r) for r in caplog.records)
    assert "llm_gateway.access" in text
    for secret in (CLIENT_KEY, UPSTREAM_KEY, PROMPT, "purple walrus", answer):
        assert secret not in text


@pytest.mark.parametrize("level, logged", [(logging.DEBUG, True), (logging.INFO, False)])
def test_bodies_only_with_log_bodies_and_debug(caplog, fake, make_gateway, level, logged):
    caplog.set_level(level, logger=ACCESS)
    gw = make_gateway(gateway_config(fake.url, server={"log_bodies": True}))
    answer = _chat(gw).json()["choices"][0]["message"]["content"]
    [line] = _access_lines(caplog, 1)
    assert ("request_body" in line) is logged
    if logged:
        assert PROMPT in line["request_body"] and answer in line["response_body"]
    assert CLIENT_KEY not in json.dumps(line)


def test_request_id_is_forwarded_and_backend_named(fake, make_gateway):
    gw = make_gateway()
    r = _chat(gw, headers={"x-request-id": "req-forward-7"})
    assert r.headers["x-request-id"] == "req-forward-7"
    assert r.headers["x-lgw-backend"] == "openai"
    assert fake.requests[-1].headers["x-request-id"] == "req-forward-7"  # the client's own
    generated = _chat(gw).headers["x-request-id"]
    # The gateway's own id goes upstream only under a configured request_id_header.
    assert generated.startswith("req_") and "x-request-id" not in fake.requests[-1].headers


class _NoCatalog:
    listed: tuple[str, ...] = ()


def test_the_line_names_the_deployment_the_attempts_and_the_fallback(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)
    recorder = Recorder(None, ModelLabel([], _NoCatalog()), Capped(), AccessLog(False))
    answers = [Result(200, deployment="east", attempts=2, fallback=("rate_limit", "gpt-4o-mini")),
               Result(200, deployment="west"), Result(200)]
    for n, answer in enumerate(answers):
        record = recorder.start({"path": "/v1/chat/completions", "method": "POST"}, f"req-{n}")
        assert record is not None
        record.routed(answer)
        record.responded(200)
        recorder.finish(record)
    retried, west, plain = _access_lines(caplog, 3)
    assert (retried["deployment"], retried["attempts"], retried["fallback_reason"],
            retried["fallback_model"]) == ("east", 2, "rate_limit", "gpt-4o-mini")
    assert west["deployment"] == "west"
    routing = {"deployment", "attempts", "fallback_reason", "fallback_model"}
    assert routing & set(west) == {"deployment"}  # one attempt, no fallback: not said
    assert not routing & set(plain)


def test_a_cache_hit_logs_no_backend_attempt_of_its_own(caplog, make_gateway):
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = make_gateway()
    body = {"model": "gpt-4o-mini", "temperature": 0,
            "messages": [{"role": "user", "content": "a question for the cache, once"}]}
    kinds = [httpx.post(f"{gw.url}/chat/completions", json=body).headers["x-lgw-cache"]
             for _ in range(2)]
    assert kinds == ["miss", "hit"]
    miss, hit = _access_lines(caplog, 2)
    assert "attempts" not in miss and "deployment" not in miss
    assert hit["attempts"] == 0 and "deployment" not in hit  # as in its ledger record


def test_text_format_keeps_the_fields():
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "%s %s %s",
                               ("POST", "/v1/models", 200), None)
    record.fields = {"request_id": "req_x", "method": "POST", "path": "/v1/models",
                     "status": 200, "model": None, "duration_ms": 1.5}
    line = TextFormatter().format(record)
    assert line.endswith("llm_gateway.access: POST /v1/models 200 request_id=req_x "
                         "duration_ms=1.5")
