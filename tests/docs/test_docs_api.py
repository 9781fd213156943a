"""The gateway's own operations (openapi/gateway.yaml) and headers, as the docs state them:
every admin and probe operation is documented, every one the docs name exists, and every
`x-lgw-*` header the docs name is one the code or the manifests use."""

from __future__ import annotations

import re

import pytest
import yaml

from docs_support import DOCS, ROOT, doc_files, rel, table_rows

SPEC = ROOT / "openapi" / "gateway.yaml"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPERATION = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE)`?\s*`?(/(?:admin|healthz|readyz|metrics)"
                       r"[\w/{}-]*)(\?[^\s`]*)?")


def norm(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/"))


def spec_operations() -> dict[tuple[str, str], set[str]]:
    """(METHOD, path with {} for parameters) -> the operation's query parameter names."""
    spec = yaml.safe_load(SPEC.read_text())
    out = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method.upper() in METHODS:
                params = op.get("parameters") or []
                out[(method.upper(), norm(path))] = {p["name"] for p in params
                                                     if p.get("in") == "query"}
    return out


def documented(text: str) -> list[tuple[str, str, str]]:
    """(METHOD, path, query) for every operation named: `GET /admin/keys?team=T`, and table
    cells like `GET` / `PATCH` / `DELETE /admin/keys/{id}`, which name several methods."""
    found = [(m, norm(p), q or "") for m, p, q in OPERATION.findall(text)]
    for cells in table_rows(text):
        for part in (cells[0].split(",") if cells else []):
            paths = OPERATION.findall(part)
            methods = re.findall(r"\b(?:GET|POST|PUT|PATCH|DELETE)\b", part)
            if len(paths) == 1:
                found += [(m, norm(paths[0][1]), paths[0][2] or "") for m in methods]
    return found


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_operation_the_docs_name_exists(page):
    ops = spec_operations()
    wrong = []
    for method, path, query in documented(page.read_text()):
        if (method, path) not in ops:
            wrong.append(f"{method} {path}: not in {rel(SPEC)}")
            continue
        names = {kv.split("=")[0] for kv in query.lstrip("?").split("&") if kv}
        if extra := names - ops[(method, path)]:
            wrong.append(f"{method} {path}: no query parameter {sorted(extra)}")
    assert not wrong, f"{rel(page)}: " + "; ".join(wrong)


def test_every_operation_is_documented():
    named = {(m, p) for page in (DOCS / "keys-and-teams.md", DOCS / "metrics.md")
             for m, p, _ in documented(page.read_text())}
    missing = sorted(set(spec_operations()) - named)
    assert not missing, f"operations of {rel(SPEC)} the docs do not name: {missing}"


def _code_text() -> str:
    files = [*(ROOT / "llm_gateway").rglob("*.py"),
             *(p for p in (ROOT / "k8s").rglob("*") if p.is_file() and p.suffix != ".md")]
    return "\n".join(p.read_text() for p in files)


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_gateway_header_the_docs_name_is_used(page):
    code = _code_text().lower()
    headers = set(re.findall(r"\bx-lgw-[a-z][a-z-]*[a-z]\b", page.read_text().lower()))
    unknown = sorted(h for h in headers if h not in code)
    assert not unknown, f"{rel(page)} names headers nothing uses: {unknown}"


MODEL_SPEC = ROOT / "openapi" / "openai.yaml"
API_PAGE = DOCS / "api.md"


def test_the_endpoint_table_is_openai_yaml():
    spec = yaml.safe_load(MODEL_SPEC.read_text())
    ops = {(m.upper(), norm(p)) for p, item in spec["paths"].items() for m in item
           if m.upper() in METHODS}
    rows = set()
    for cells in table_rows(API_PAGE.read_text()):
        for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/v1/[\w/{}-]*)`",
                               cells[0] if cells else ""):
            rows.add((m, norm(p)))
    assert rows == ops, (f"{rel(API_PAGE)}: rows for operations {rel(MODEL_SPEC)} lacks "
                         f"{sorted(rows - ops)}; operations without a row {sorted(ops - rows)}")
