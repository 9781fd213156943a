"""Issue 13, defect 2: passthrough calls are recorded in the ledger (endpoint, method, status,
bytes each way, what the answer counted: tokens, images, characters, seconds, the id of the
object it made) and priced where `accounting.prices` can; budgets are settled with that
usage; old spool lines and old ledger tables still load.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import httpx
import pytest
import yaml

from llm_gateway.accounting.ledger import Ledger
from llm_gateway.accounting.record import LEDGER_STEPS, TABLE, UsageRecord
from llm_gateway.accounting.report import UsageQuery, usage_report
from llm_gateway.cli.main import main as cli
from llm_gateway.config import parse_config
from llm_gateway.storage.connect import connect
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config, new_key
from services import fresh_postgres_database, run_sync

AUDIO = bytes(range(256)) * 200  # 51,200 bytes: 3 "seconds" for the fake
PRICES = {"gpt-image-1": {"input": 5.0, "output": 40.0}}


@pytest.fixture
def gw(fake, tmp_path: Path) -> Iterator[GatewayServer]:
    env = gateway_env()
    data = keys_config(fake.url, str(tmp_path), accounting={"flush_seconds": 0.05,
                                                            "prices": PRICES})
    with GatewayServer(parse_config(data, env=env), env=env) as server:
        server.config_data = data  # type: ignore[attr-defined]
        yield server


def call(gw: GatewayServer, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kwargs)


def rows(tmp_path: Path, count: int) -> dict[str, dict]:
    """The ledger's rows by request id, once `count` of them are in."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            db.row_factory = sqlite3.Row
            found = [dict(r) for r in db.execute(f"SELECT * FROM {TABLE}")]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return {r["request_id"]: r for r in found}
        time.sleep(0.05)


def test_passthrough_calls_are_recorded_with_endpoint_bytes_and_units(gw, fake, tmp_path,
                                                                       capsys, monkeypatch):
    key_id, key = new_key(gw)
    image_body = {"model": "gpt-image-1", "prompt": "a red cat", "n": 2}
    file = call(gw, key, "POST", "/files", data={"purpose": "batch"},  # the batch's input
                files={"file": ("in.jsonl", b"{}\n")})
    replies = {
        "file": file,
        "images": call(gw, key, "POST", "/images/generations", json=image_body),
        "speech": call(gw, key, "POST", "/audio/speech",
                       json={"model": "tts-1", "input": "hello world", "voice": "alloy"}),
        "long_speech": call(gw, key, "POST", "/audio/speech",  # 100 KB: relayed as it comes
                            json={"model": "tts-1", "input": "x" * 1000, "voice": "alloy"}),
        "transcription": call(gw, key, "POST", "/audio/transcriptions",
                              data={"model": "whisper-1"},
                              files={"file": ("a.wav", AUDIO, "audio/wav")}),
        "batch": call(gw, key, "POST", "/batches", json={
            "input_file_id": file.json()["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}),
    }
    batch_id = replies["batch"].json()["id"]
    replies["batch_read"] = call(gw, key, "GET", f"/batches/{batch_id}")
    fake.fail_next(404, message="No such model")
    replies["missing"] = call(gw, key, "POST", "/moderations", json={"input": "hi"})
    assert [r.status_code for r in replies.values()] == [200] * 7 + [404]
    recorded = rows(tmp_path, len(replies))
    row = {name: recorded[r.headers["x-request-id"]] for name, r in replies.items()}

    for name, reply in replies.items():
        assert row[name]["key_id"] == key_id and row[name]["backend"] == "openai"
        assert row[name]["response_bytes"] == len(reply.content), name

    images = row["images"]
    assert (images["endpoint"], images["method"], images["status"], images["outcome"]) == (
        "/images/generations", "POST", 200, "ok")
    assert images["request_bytes"] == len(json.dumps(image_body, separators=(",", ":")))
    assert (images["units"], images["unit"]) == (2, "images")
    assert (images["model"], images["prompt_tokens"], images["completion_tokens"]) == (
        "gpt-image-1", 3, 200)
    assert images["cost"] == pytest.approx((3 * 5.0 + 200 * 40.0) / 1e6)

    assert (row["speech"]["units"], row["speech"]["unit"]) == (11, "characters")
    assert row["speech"]["response_bytes"] == 1100
    assert (row["long_speech"]["units"], row["long_speech"]["response_bytes"]) == (1000,
                                                                                   100_000)
    transcription = row["transcription"]
    assert (transcription["units"], transcription["unit"]) == (3, "seconds")
    assert transcription["model"] == "whisper-1"
    assert transcription["request_bytes"] > len(AUDIO)  # the form around the file
    assert row["batch"]["object_id"] == batch_id and batch_id.startswith("batch_")
    read = row["batch_read"]
    assert (read["endpoint"], read["method"], read["request_bytes"]) == (
        f"/batches/{batch_id}", "GET", 0)
    missing = row["missing"]
    assert (missing["endpoint"], missing["status"], missing["outcome"]) == (
        "/moderations", 404, "upstream_error")

    # The reports still work over the new columns.
    report = Admin(gw)("GET", "/admin/usage?group_by=key").json()["data"]
    assert [(r["key_id"], r["requests"]) for r in report] == [(key_id, 8)]
    assert report[0]["cost"] == pytest.approx(images["cost"])
    monkeypatch.delenv("LLM_GATEWAY__STORAGE__DATA_DIR", raising=False)
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(gw.config_data))
    assert cli(["usage", "--config", str(config_file), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["requests"] == 8


def test_a_budget_is_settled_with_what_the_passthrough_used(gw, fake):
    _, key = new_key(gw, budget={"tokens": 150, "period": "day"})
    body = {"model": "gpt-image-1", "prompt": "a red cat", "n": 2}  # 203 tokens, reported
    assert call(gw, key, "POST", "/images/generations", json=body).status_code == 200
    reply = call(gw, key, "POST", "/images/generations", json=body)
    assert reply.status_code == 429, reply.text
    assert reply.json()["error"]["code"] == "insufficient_quota"
    assert fake.calls["POST /v1/images/generations"] == 1


OLD_LINE = {  # a spool line written before the passthrough fields existed
    "request_id": "req_old", "time": 1_800_000_000.0, "key_id": "k1", "team": "red",
    "model": "gpt-4o-mini", "served_model": "gpt-4o-mini", "backend": "openai",
    "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0, "cost": 0.5,
    "latency_ms": 12.0, "ttft_ms": None, "status": 200, "outcome": "ok", "partial": False,
    "grouping": None, "saved_tokens": 0, "charged": True, "record_id": "0" * 28,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    with fresh_postgres_database() if request.param == "postgresql" else nullcontext() as url:
        yield url


def test_old_spool_lines_and_old_ledger_tables_still_load(database_url, tmp_path: Path):
    record = UsageRecord.from_json(json.dumps(OLD_LINE).encode())
    assert (record.endpoint, record.request_bytes, record.units, record.object_id) == (
        None, 0, 0.0, None)

    async def go() -> list[dict]:
        config = parse_config({"storage": {"data_dir": str(tmp_path), "url": database_url}},
                              env={})
        db = await connect(config.storage.url, config)
        try:
            await db.migrate("ledger", LEDGER_STEPS[:1])  # a database made by the old code
            spool = tmp_path / "spool"
            spool.mkdir()
            # A dead process's segment, in the old format: replayed at start.
            (spool / "dead-1.00000001.jsonl").write_bytes(json.dumps(OLD_LINE).encode() + b"\n")
            ledger = Ledger(db, spool, flush_seconds=3600)
            await ledger.start()
            ledger.record(UsageRecord(
                request_id="req_new", time=1_800_000_001.0, key_id="k1", team="red", model="",
                served_model="", backend="openai", endpoint="/files", method="GET",
                response_bytes=42, units=2, unit="images", object_id="file-1"))
            await ledger.aclose()
            report = await usage_report(db, UsageQuery(group_by="team"))
            assert [(r["team"], r["requests"]) for r in report] == [("red", 2)]
            return await db.fetch(f"SELECT request_id, endpoint, response_bytes, unit,"
                                  f" object_id FROM {TABLE} ORDER BY request_id")
        finally:
            await db.aclose()

    assert run_sync(go) == [
        {"request_id": "req_new", "endpoint": "/files", "response_bytes": 42, "unit": "images",
         "object_id": "file-1"},
        {"request_id": "req_old", "endpoint": None, "response_bytes": 0, "unit": None,
         "object_id": None},
    ]
