"""docs/accounting.md's ledger table has a row for every column of the ledger and no other,
its report section names every column of the report, every `group_by` the docs and the API
spec list is the report's, and docs/metrics.md names every field of the request log line."""

from __future__ import annotations

import logging
import re

import orjson
import pytest
import yaml

from llm_gateway.accounting.record import COLUMNS
from llm_gateway.accounting.report import GROUP_BY
from llm_gateway.api import admin_usage
from llm_gateway.call import Call, Result
from llm_gateway.cli.usage import SUM_COLUMNS
from llm_gateway.metrics.access_log import ACCESS, AccessLog
from llm_gateway.metrics.recorder import Recorder
from llm_gateway.metrics.registry import Capped, ModelLabel

from docs_support import DOCS, ROOT, code_spans, doc_files, prose, rel, table_rows

ACCOUNTING = DOCS / "accounting.md"
METRICS = DOCS / "metrics.md"


def section(text: str, title: str) -> str:
    """The text under a `## title` heading, up to the next one."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m is not None, f"no section {title!r}"
    return m.group(1)


def test_the_ledger_table_has_every_column_and_no_other():
    rows = table_rows(section(ACCOUNTING.read_text(), "Usage ledger"))
    head, *body = rows
    assert head[0] == "column", "the first table under Usage ledger is the columns' table"
    named = [name for cells in body[1:] for name in re.findall(r"`(\w+)`", cells[0])]
    assert sorted(named) == sorted(COLUMNS), (
        f"{rel(ACCOUNTING)}: missing {sorted(set(COLUMNS) - set(named))}, "
        f"not columns {sorted(set(named) - set(COLUMNS))}")


def test_the_report_section_names_every_report_column():
    spans = set(code_spans(section(ACCOUNTING.read_text(), "Reports")))
    missing = [c for c in SUM_COLUMNS if c not in spans]
    assert not missing, f"{rel(ACCOUNTING)} Reports does not name {missing}"


GROUP_LIST = re.compile(r"(?:--group-by |group_by=)((?:\w+\|)+\w+)")


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_group_by_list_the_docs_show_is_the_reports(page):
    text = page.read_text().replace("\\|", "|")
    wrong = [found for found in GROUP_LIST.findall(text)
             if tuple(found.split("|")) != GROUP_BY]
    assert not wrong, f"{rel(page)} lists group_by as {wrong}, the report takes {GROUP_BY}"


def test_the_admin_api_and_its_spec_take_the_reports_groups():
    spec = yaml.safe_load((ROOT / "openapi" / "gateway.yaml").read_text())
    params = spec["paths"]["/admin/usage"]["get"]["parameters"]
    [group_by] = [p for p in params if p["name"] == "group_by"]
    assert tuple(group_by["schema"]["enum"]) == GROUP_BY == admin_usage.GROUP_BY
    row = spec["components"]["schemas"]["UsageRow"]["properties"]
    assert [c for c in SUM_COLUMNS if c not in row] == []


class _NoCatalog:
    listed: tuple[str, ...] = ()


def every_log_field() -> set[str]:
    """The fields of a request line with everything set (bodies logged, routed, streamed)."""
    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    logger = logging.getLogger(ACCESS.name)
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        recorder = Recorder(None, ModelLabel([], _NoCatalog()), Capped(), AccessLog(True))
        record = recorder.start({"path": "/v1/chat/completions", "method": "POST"}, "req-doc")
        assert record is not None
        body = {"model": "gpt-4o", "messages": []}
        record.call = Call("createChatCompletion", "/chat/completions", "gpt-4o", body,
                           orjson.dumps(body), True, "req-doc")
        record.enter("openai")
        record.leave()
        record.first_token_at = record.started + 0.01
        record.body = [b"{}"]
        record.routed(Result(200, deployment="east", attempts=2,
                             fallback=("rate_limit", "gpt-4o-mini")))
        record.responded(200)
        recorder.finish(record)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [line] = lines
    return set(line.fields)  # type: ignore[attr-defined]


def test_the_logs_section_names_every_field_of_the_request_line():
    spans = set(code_spans(prose(section(METRICS.read_text(), "Logs"))))
    missing = sorted(every_log_field() - spans)
    assert not missing, f"{rel(METRICS)} Logs does not name the request line's {missing}"
