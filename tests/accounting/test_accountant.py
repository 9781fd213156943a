"""The Accountant: one record per request through a real gateway, and settling admissions."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from llm_gateway.accounting.accountant import Accountant
from llm_gateway.accounting.record import TABLE
from llm_gateway.call import Call, Result
from llm_gateway.config import parse_config
from llm_gateway.errors import UpstreamTimeout
from llm_gateway.limits.gate import Admission
from llm_gateway.stream.relay import Relay
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, gateway_config

PRICES = {"gpt-4o-mini": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}
OWN_ENV = {k: v for k, v in ENV.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}


class Settled(Admission):
    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, float]] = []

    def settle(self, tokens: int, cost: float) -> None:
        self.calls.append((tokens, cost))


def records(path: Path, count: int) -> dict[str, dict]:
    """The ledger's rows once `count` are there (the writer flushes every 50 ms here)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(path) as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute(f"SELECT * FROM {TABLE}")]
        if len(rows) >= count or time.monotonic() > deadline:
            return {r["request_id"]: r for r in rows}
        time.sleep(0.05)


@pytest.fixture
def accounted(fake: FakeUpstream, tmp_path: Path) -> Iterator[GatewayServer]:
    data = gateway_config(fake.url, storage={"data_dir": str(tmp_path)},
                          accounting={"flush_seconds": 0.05, "prices": PRICES})
    with GatewayServer(parse_config(data, env=OWN_ENV), env=OWN_ENV) as server:
        yield server


def test_every_request_gets_one_priced_record(accounted: GatewayServer,
                                              tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=accounted.url, api_key="sk-x", max_retries=0)
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
    whole = client.chat.completions.create(**ask, extra_headers={"x-request-id": "acc-1"})
    chunks = list(client.chat.completions.create(**ask, stream=True,
                                                 extra_headers={"x-request-id": "acc-2"}))
    assert all(c.choices for c in chunks)  # the usage chunk we asked for was cut out
    with_usage = list(client.chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": "acc-3"}))
    assert with_usage[-1].usage is not None and not with_usage[-1].choices
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=ask["messages"],
                                       extra_headers={"x-request-id": "acc-4"})

    rows = records(tmp_path / "gateway.db", 4)
    assert sorted(rows) == ["acc-1", "acc-2", "acc-3", "acc-4"]
    one = rows["acc-1"]
    usage = whole.usage
    assert (one["prompt_tokens"], one["completion_tokens"]) == (usage.prompt_tokens,
                                                                usage.completion_tokens)
    assert one["cost"] == pytest.approx((usage.prompt_tokens * 1.0
                                         + usage.completion_tokens * 2.0) / 1e6)
    assert (one["key_id"], one["team"], one["backend"]) == ("anonymous", None, "openai")
    assert (one["status"], one["outcome"], one["partial"], one["charged"]) == (200, "ok", 0, 1)
    assert one["latency_ms"] > 0 and one["ttft_ms"] is None
    for streamed in ("acc-2", "acc-3"):
        assert rows[streamed]["completion_tokens"] == with_usage[-1].usage.completion_tokens
        assert rows[streamed]["ttft_ms"] is not None and rows[streamed]["partial"] == 0
    missing = rows["acc-4"]
    assert (missing["status"], missing["outcome"], missing["prompt_tokens"]) == (404, "error", 0)


def _accountant(tmp_path: Path, **accounting) -> Accountant:
    config = parse_config({"storage": {"data_dir": str(tmp_path)},
                           "accounting": {"prices": PRICES, **accounting}}, env={})
    return Accountant(config, {}, {})


def _call(rid: str) -> Call:
    body = {"model": "gpt-4o-mini", "messages": []}
    return Call("createChatCompletion", "/chat/completions", "gpt-4o-mini", body,
                orjson.dumps(body), False, rid)


BODY = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                                              "total_tokens": 1500}})


@pytest.mark.parametrize(("grouping", "charge_grouped", "charged"), [
    ("miss", False, True), ("coalesced", False, False), ("hit", False, False),
    ("hit", True, True)])
async def test_grouped_answers_are_charged_only_when_configured(
        tmp_path: Path, grouping: str, charge_grouped: bool, charged: bool) -> None:
    from llm_gateway.storage.connect import open_database

    accountant = _accountant(tmp_path, charge_grouped=charge_grouped)
    db = await open_database(accountant.config)
    await accountant.start(db)
    admission = Settled()
    result = Result(200, body=BODY, backend="openai", grouping=grouping)
    await Relay(accountant.track(_call("g1"), admission, result, time.perf_counter())).whole()
    cost = (1000 * 1.0 + 500 * 2.0) / 1e6
    assert admission.calls == ([(1500, pytest.approx(cost))] if charged else [(0, 0.0)])
    assert accountant.ledger is not None
    await accountant.ledger.flush()
    row = await db.fetchone(f"SELECT cost, saved_tokens, charged, grouping, attempts"
                            f" FROM {TABLE}")
    grouped = grouping in ("coalesced", "hit")
    # A grouped answer made no backend call of its own: no tokens spent, no attempts.
    assert row == {"cost": pytest.approx(cost if charged else 0.0),
                   "saved_tokens": 1500 if grouped else 0, "charged": int(charged),
                   "grouping": grouping, "attempts": 0 if grouped else 1}
    await accountant.aclose()
    await db.aclose()


async def test_failed_calls_record_an_error_and_settle_nothing(tmp_path: Path) -> None:
    from llm_gateway.storage.connect import open_database

    accountant = _accountant(tmp_path)
    db = await open_database(accountant.config)
    await accountant.start(db)
    admission = Settled()
    accountant.failed(_call("f1"), admission, UpstreamTimeout("slow"), time.perf_counter())
    assert admission.calls == [(0, 0.0)]
    await accountant.aclose()
    row = await db.fetchone(f"SELECT status, outcome, prompt_tokens, charged FROM {TABLE}")
    assert row == {"status": 504, "outcome": "timeout", "prompt_tokens": 0, "charged": 0}
    await db.aclose()


async def test_disabled_accounting_records_nothing_but_settles(tmp_path: Path) -> None:
    accountant = _accountant(tmp_path, enabled=False)
    await accountant.start(None)
    assert accountant.ledger is None
    admission = Settled()
    await Relay(accountant.track(_call("d1"), admission,
                                 Result(200, body=BODY, backend="openai"),
                                 time.perf_counter())).whole()
    assert admission.calls == [(1500, pytest.approx(0.002))]
    await accountant.aclose()
