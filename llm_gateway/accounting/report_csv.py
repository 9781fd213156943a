"""The usage report's columns and its CSV: one writer for `llm-gateway usage --format csv` and
the console's export, so both give the same file for the same query."""

from __future__ import annotations

import csv
from typing import IO, Any

# New sums go last: scripts reading the CSV by position keep their columns.
SUM_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens",
               "total_tokens", "cost", "saved_tokens", "partial_requests", "retried_requests",
               "fallback_requests")
GROUP_COLUMN = {"team": "team", "key": "key_id", "model": "model", "deployment": "deployment",
                "day": "day"}


def columns(group_by: str | None) -> list[str]:
    group = [GROUP_COLUMN[group_by]] if group_by else []
    return [*group, *SUM_COLUMNS]


def write_csv(out: IO[str], rows: list[dict[str, Any]], group_by: str | None) -> None:
    names = columns(group_by)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(["" if row.get(c) is None else row.get(c) for c in names] for row in rows)
