"""A stream cut short is counted the same in the ledger, the metrics and the request log line
(issue 14): all three read what one meter measured, not each its own scan of the stream."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from metrics.metrics_support import scrape, value
from stream_usage_support import ledger_row
from test_stream_usage import read_some_then_leave, slow  # noqa: F401 (the slow fixture)

from llm_gateway.app.logs import JsonFormatter
from llm_gateway.config import parse_config
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, gateway_config

ACCESS = "llm_gateway.access"


def _line(caplog, request_id: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for record in caplog.records:
            if record.name == ACCESS:
                line = json.loads(JsonFormatter().format(record))
                if line["request_id"] == request_id:
                    return line
        assert time.monotonic() < deadline, f"no request log line for {request_id}"
        time.sleep(0.05)


def _tokens(base: str, kind: str, want: float, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while True:  # metrics are added in batches (within a second, or at a scrape)
        got = value(scrape(base), "llm_gateway_tokens_total", kind=kind)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize("words", [3, 8])
def test_cut_stream_counts_alike_in_ledger_metrics_and_log(slow, tmp_path: Path,  # noqa: F811
                                                           caplog, words: int) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    env = {k: v for k, v in ENV.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}
    config = gateway_config(slow.url, storage={"data_dir": str(tmp_path)},
                            accounting={"flush_seconds": 0.05})
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        request_id = "req_" + uuid.uuid4().hex
        read_some_then_leave(server, request_id, words=words)
        row = ledger_row(tmp_path / "gateway.db", request_id)
        line = _line(caplog, request_id)
        prompt = _tokens(server.base, "prompt", row["prompt_tokens"])
        completion = _tokens(server.base, "completion", row["completion_tokens"])
    assert (row["partial"], row["outcome"]) == (1, "client_gone")
    assert row["prompt_tokens"] > 30 and row["completion_tokens"] >= words
    assert (line["prompt_tokens"], line["completion_tokens"]) == (
        row["prompt_tokens"], row["completion_tokens"])
    assert (prompt, completion) == (row["prompt_tokens"], row["completion_tokens"])
    assert line["status"] == 200 and line["ttft_ms"] is not None
