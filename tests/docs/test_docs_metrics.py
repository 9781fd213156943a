"""docs/metrics.md has a row for every metric the gateway and the worker export, with its type
and labels, and the docs name no metric that does not exist."""

from __future__ import annotations

import re

import pytest
from prometheus_client.registry import CollectorRegistry

from llm_gateway.metrics.registry import GatewayMetrics
from llm_gateway.worker.metrics import WorkerMetrics

from docs_support import DOCS, doc_files, rel, table_rows, unquote

PAGE = DOCS / "metrics.md"
SAMPLE_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                   "gauge": [""]}


def families() -> dict[str, tuple[str, list[str]]]:
    """Name as documented (a counter's with _total) -> (type, label names)."""
    out: dict[str, tuple[str, list[str]]] = {}
    registries = [GatewayMetrics().registry, WorkerMetrics(lambda: None).registry]
    for registry in registries:
        assert isinstance(registry, CollectorRegistry)
        for family in registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = [n for n in _label_names(registry, family.name)]
            out[name] = (family.type, labels)
    return out


def _label_names(registry: CollectorRegistry, name: str) -> list[str]:
    collector = registry._names_to_collectors.get(name) or registry._names_to_collectors.get(
        name + "_total")
    return list(getattr(collector, "_labelnames", ()))


def exported_samples() -> set[str]:
    names = set()
    for name, (kind, _) in families().items():
        base = name.removesuffix("_total") if kind == "counter" else name
        names.add(name)
        names.update(base + s for s in SAMPLE_SUFFIXES.get(kind, [""]))
    return names


def documented() -> dict[str, tuple[str, list[str]]]:
    rows = {}
    for cells in table_rows(PAGE.read_text()):
        name = unquote(cells[0]) if cells else None
        if name and re.fullmatch(r"llm_(gateway|worker)_\w+", name) and len(cells) >= 3:
            labels = [x.strip() for x in cells[2].split(",") if x.strip()]
            rows[name] = (cells[1], labels)
    return rows


def test_every_metric_has_a_row():
    missing = sorted(set(families()) - set(documented()))
    assert not missing, f"metrics without a row in {rel(PAGE)}: {missing}"


def test_every_row_is_an_exported_metric_with_its_type_and_labels():
    actual = families()
    wrong = []
    for name, (kind, labels) in documented().items():
        if name not in actual:
            wrong.append(f"{name}: not exported")
        elif actual[name] != (kind, labels):
            wrong.append(f"{name}: exported as {actual[name]}, documented as {(kind, labels)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_metric_the_docs_name_exists(page):
    named = set(re.findall(r"\bllm_(?:gateway|worker)_[a-z_]*[a-z]\b(?![*])",
                           page.read_text()))
    unknown = sorted(named - exported_samples())
    assert not unknown, f"{rel(page)} names metrics nobody exports: {unknown}"
