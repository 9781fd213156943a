"""An answer the backend gave but the response path failed to send is still ended: its tokens
reach the ledger (outcome "error"), its budget reservation is settled, and an upstream stream
is closed, not left generating for nobody.

The failure is injected where nothing real fails today (turning the answer into a response),
standing in for any fault between the call's return and its relay.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stream_usage_support import ledger_row

from llm_gateway.api import chat
from llm_gateway.config import parse_config
from llm_gateway.config.access import BudgetConfig
from llm_gateway.principal import Principal
from llm_gateway.testing.fake_upstream import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY, gateway_config

# Reserves 2 + 600 tokens: more than the budget, so a reservation never settled refuses the
# next call, while the few tokens an answer really uses leave room for it.
ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}],
       "max_tokens": 600}
BUDGET = 500


@pytest.fixture
def slow() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY, chunk_delay=0.2) as server:
        yield server


def _gateway(upstream: FakeUpstream, tmp_path: Path) -> GatewayServer:
    env = {k: v for k, v in ENV.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}
    config = gateway_config(upstream.url, storage={"data_dir": str(tmp_path)},
                            accounting={"flush_seconds": 0.05})
    server = GatewayServer(parse_config(config, env=env), env=env).start()
    who = Principal(key_id="key_unsent", team="team-unsent",
                    team_budget=BudgetConfig(tokens=BUDGET, period="month"))

    async def authenticate(scope: dict) -> Principal:
        return who

    server.app.state.auth.authenticate = authenticate
    return server


def _failing_response(result):
    raise RuntimeError("the response could not be made")


def _post(server: GatewayServer, request_id: str, **extra) -> httpx.Response:
    return httpx.post(server.url + "/chat/completions", json={**ASK, **extra}, timeout=30,
                      headers={"x-request-id": request_id})


@pytest.mark.parametrize("stream", [False, True])
def test_an_unsent_answer_is_recorded_settled_and_closed(slow: FakeUpstream, tmp_path: Path,
                                                         monkeypatch, stream: bool) -> None:
    server = _gateway(slow, tmp_path)
    try:
        request_id = "req_" + uuid.uuid4().hex
        with monkeypatch.context() as patch:
            patch.setattr(chat, "to_response", _failing_response)
            failed = _post(server, request_id, stream=stream)
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error"
        row = ledger_row(tmp_path / "gateway.db", request_id)
        assert row["outcome"] == "error" and row["team"] == "team-unsent"
        assert row["prompt_tokens"] > 0
        if stream:
            # Closed after its first block at most: the fake saw its client leave.
            assert slow.wait_for(lambda: slow.disconnects == 1, timeout=10)
            assert row["partial"] == 1
        else:
            # The body was whole: its reported usage is kept, tokens the upstream charged.
            assert row["completion_tokens"] > 0 and row["partial"] == 0
        # The reservation (602 tokens) was replaced by what the answer used: room for more.
        after = _post(server, "req_" + uuid.uuid4().hex)
        assert after.status_code == 200, after.text
    finally:
        server.stop()
