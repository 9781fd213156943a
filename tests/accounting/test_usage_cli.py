"""`llm-gateway usage` against a ledger a real Ledger wrote (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml

from llm_gateway.accounting.ledger import Ledger
from llm_gateway.config import parse_config
from llm_gateway.storage.connect import connect

from ledger_support import make_record
from services import fresh_postgres_database, run_sync

DAY1 = 1_798_761_600.0  # 2027-01-01T00:00:00Z


@pytest.fixture(params=["sqlite", "postgresql"])
def config_file(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with fresh_postgres_database() if request.param == "postgresql" else nullcontext() as url:
        data = {"storage": {"data_dir": str(tmp_path / "state"), "url": url}}
        run_sync(lambda: _fill(data, tmp_path))
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(data))
        yield path


async def _fill(data: dict, tmp_path: Path) -> None:
    config = parse_config(data, env={})
    db = await connect(config.storage.url, config)
    ledger = Ledger(db, tmp_path / "spool", flush_seconds=3600)
    await ledger.start()
    for n, (team, key, model, when, deployment) in enumerate([
            ("red", "k1", "gpt-4o-mini", DAY1, "east"),
            ("red", "k2", "gpt-4o", DAY1 + 86400, None),
            ("blue", "k3", "gpt-4o-mini", DAY1 + 86400, "east")]):
        # k3's call was retried, then fell back after a rate limit.
        ledger.record(make_record(n, team=team, key_id=key, model=model, time=when,
                                  cost=0.25 * (n + 1), deployment=deployment,
                                  attempts=3 if n == 2 else 1,
                                  fallback_reason="rate_limit" if n == 2 else None))
    await ledger.aclose()
    await db.aclose()


def usage(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}
    env["COLUMNS"] = "200"  # rich: wide enough for every column
    return subprocess.run([sys.executable, "-m", "llm_gateway", "usage", "--config",
                           str(config_file), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_json_grouped_by_team(config_file: Path) -> None:
    out = usage(config_file, "--group-by", "team", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["team"], r["requests"], r["cost"]) for r in rows] == [("blue", 1, 0.75),
                                                                     ("red", 2, 0.75)]


def test_csv_by_day_with_filters(config_file: Path) -> None:
    out = usage(config_file, "--group-by", "day", "--format", "csv", "--team", "red",
                "--since", "2027-01-02")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["day"], r["requests"], r["total_tokens"]) for r in rows] == [
        ("2027-01-02", "1", "15")]


# What `llm-gateway usage --format csv` printed before deployments: kept, in this order.
EARLIER_COLUMNS = ["requests", "prompt_tokens", "completion_tokens", "cached_tokens",
                   "total_tokens", "cost", "saved_tokens", "partial_requests"]


def test_csv_by_deployment_keeps_the_earlier_columns_first(config_file: Path) -> None:
    out = usage(config_file, "--group-by", "deployment", "--format", "csv")
    assert out.returncode == 0, out.stderr
    header, *rows = list(csv.reader(io.StringIO(out.stdout)))
    assert header == ["deployment", *EARLIER_COLUMNS, "retried_requests", "fallback_requests"]
    by = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["deployment"], r["requests"], r["cost"], r["retried_requests"],
             r["fallback_requests"]) for r in by] == [("east", "2", "1.0", "1", "1"),
                                                      ("", "1", "0.5", "0", "0")]
    out = usage(config_file, "--format", "csv")
    assert out.stdout.splitlines()[0].split(",")[:len(EARLIER_COLUMNS)] == EARLIER_COLUMNS
    out = usage(config_file, "--group-by", "deployment")  # the table names the missing one
    assert out.returncode == 0 and "east" in out.stdout and "(none)" in out.stdout


def test_table(config_file: Path) -> None:
    out = usage(config_file, "--group-by", "model", "--model", "gpt-4o-mini")
    assert out.returncode == 0, out.stderr
    assert "gpt-4o-mini" in out.stdout and "gpt-4o " not in out.stdout
    assert "$1.0000" in out.stdout  # 0.25 + 0.75
    assert "Usage, the beginning to now" in out.stdout


def test_bad_since_is_an_error(config_file: Path) -> None:
    out = usage(config_file, "--since", "last tuesday")
    assert out.returncode == 2
    assert "since" in out.stderr
