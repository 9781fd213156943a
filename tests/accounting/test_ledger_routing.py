"""Routing in the ledger (issue 15): the deployment that answered, the attempts made and why
it fell back go from the Result into the record, the database row and the usage report, in
real SQLite and PostgreSQL; a database and a spool from before these columns still load."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from llm_gateway.accounting.accountant import Accountant
from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.record import FIELDS, LEDGER_STEPS, TABLE, UsageRecord
from llm_gateway.accounting.report import UsageQuery, usage_report
from llm_gateway.call import Call, Result
from llm_gateway.config import parse_config
from llm_gateway.limits.gate import Admission
from llm_gateway.storage.database import Database
from llm_gateway.stream.relay import Relay

from ledger_support import make_record
from services import open_test_database

BODY = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 50,
                                              "total_tokens": 150}})
ROUTING = ("deployment", "attempts", "fallback_reason")
NEW_COLUMNS = set(ROUTING)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_test_database(request.param, tmp_path) as database:
        yield database


def _call(rid: str) -> Call:
    body = {"model": "gpt-4o", "messages": []}
    return Call("createChatCompletion", "/chat/completions", "gpt-4o", body,
                orjson.dumps(body), False, rid)


async def test_a_routed_answer_reaches_the_row_and_the_report(db: Database,
                                                              tmp_path: Path) -> None:
    config = parse_config({"storage": {"data_dir": str(tmp_path)}}, env={})
    accountant = Accountant(config, {}, {})
    await accountant.start(db)
    answers = {
        # Retried on a second deployment of gpt-4o-mini after gpt-4o was rate limited.
        "r-east": Result(200, body=BODY, backend="azure-east", deployment="east", attempts=2,
                         fallback=("rate_limit", "gpt-4o-mini")),
        "r-west": Result(200, body=BODY, backend="azure-west", deployment="west"),
        # Shared east's call: its deployment and fallback, none of its attempts.
        "r-coalesced": Result(200, body=BODY, backend="azure-east", deployment="east",
                              attempts=2, fallback=("rate_limit", "gpt-4o-mini"),
                              grouping="coalesced"),
        "r-plain": Result(200, body=BODY, backend="openai"),
    }
    for rid, result in answers.items():
        await Relay(accountant.track(_call(rid), Admission(), result,
                                     time.perf_counter())).whole()
    assert accountant.ledger is not None
    assert await accountant.ledger.flush()
    rows = {r["request_id"]: r for r in await db.fetch(
        f"SELECT request_id, deployment, attempts, fallback_reason, backend FROM {TABLE}")}
    assert rows == {
        "r-east": {"request_id": "r-east", "deployment": "east", "attempts": 2,
                   "fallback_reason": "rate_limit", "backend": "azure-east"},
        "r-west": {"request_id": "r-west", "deployment": "west", "attempts": 1,
                   "fallback_reason": None, "backend": "azure-west"},
        "r-coalesced": {"request_id": "r-coalesced", "deployment": "east", "attempts": 0,
                        "fallback_reason": "rate_limit", "backend": "azure-east"},
        "r-plain": {"request_id": "r-plain", "deployment": None, "attempts": 1,
                    "fallback_reason": None, "backend": "openai"},
    }
    report = await usage_report(db, UsageQuery(group_by="deployment"))
    assert [(r["deployment"], r["requests"], r["total_tokens"], r["saved_tokens"],
             r["retried_requests"], r["fallback_requests"]) for r in report] == [
        ("east", 2, 300, 150, 1, 2), ("west", 1, 150, 0, 0, 0), (None, 1, 150, 0, 0, 0)]
    [totals] = await usage_report(db, UsageQuery(model="gpt-4o"))
    assert (totals["requests"], totals["retried_requests"], totals["fallback_requests"]) == (
        4, 1, 2)
    await accountant.aclose()


OLD_FIELDS = [f for f in FIELDS if f not in NEW_COLUMNS]


async def test_a_database_and_a_spool_from_before_load_and_take_new_records(
        db: Database, tmp_path: Path) -> None:
    assert LEDGER_STEPS[-1].count("ADD COLUMN") == len(ROUTING)  # the step this test is about
    await db.migrate("ledger", LEDGER_STEPS[:-1])  # the schema the previous gateway made
    old = make_record(1, request_id="req_old_row")
    values = [getattr(old, f) for f in OLD_FIELDS]
    await db.execute(f"INSERT INTO {TABLE} ({', '.join(OLD_FIELDS)}) VALUES"
                     f" ({', '.join('?' * len(OLD_FIELDS))})", *values)
    spool = tmp_path / "spool"
    spool.mkdir()
    # A dead process's segment, written by the previous gateway: no routing fields.
    line = {f: getattr(make_record(2, request_id="req_old_line"), f) for f in OLD_FIELDS}
    (spool / "dead-1.00000001.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    ledger = Ledger(db, spool, flush_seconds=3600)
    await ledger.start()  # migrates, and replays the dead process's segment
    ledger.record(make_record(3, request_id="req_new", deployment="east", attempts=2,
                              fallback_reason="rate_limit"))
    assert await ledger.flush()
    await ledger.aclose()
    rows = await db.fetch(f"SELECT request_id, {', '.join(ROUTING)} FROM {TABLE}"
                          " ORDER BY request_id")
    assert rows == [
        {"request_id": "req_new", "deployment": "east", "attempts": 2,
         "fallback_reason": "rate_limit"},
        {"request_id": "req_old_line", "deployment": None, "attempts": 1,
         "fallback_reason": None},
        {"request_id": "req_old_row", "deployment": None, "attempts": 1,
         "fallback_reason": None},
    ]
    report = await usage_report(db, UsageQuery(group_by="deployment"))
    assert [(r["deployment"], r["requests"], r["retried_requests"])
            for r in report] == [("east", 1, 1), (None, 2, 0)]


def test_an_old_spool_line_reads_as_a_plain_call() -> None:
    line = {f: getattr(make_record(1), f) for f in OLD_FIELDS}
    record = UsageRecord.from_json(orjson.dumps(line))
    assert (record.deployment, record.attempts, record.fallback_reason) == (None, 1, None)
    routed = make_record(2, deployment="west", attempts=3, fallback_reason="error")
    assert UsageRecord.from_json(routed.to_json()) == routed
