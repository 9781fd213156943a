"""Links and paths in the docs lead somewhere: every relative link to an existing file (and
heading), every repository path in a code span to an existing file, every docs page from
README, and the code layout page to the packages and import layers as they are."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from docs_support import DOCS, ROOT, code_blocks, code_spans, doc_files, prose, rel

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
TOP_DIRS = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} | {
    ".ci"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    out.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", page.read_text()))
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"(`+).+?\1", "", prose(page.read_text()), flags=re.S)
    return LINK.findall(text) + re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, re.M)


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {rel(dest)}")
    assert not broken, f"{rel(page)}: " + "; ".join(broken)


def repo_paths(page: Path) -> list[str]:
    """Tokens of code spans that name a path under a top-level folder of the repository."""
    out = []
    for span in code_spans(page.read_text()):
        for token in span.split():
            token = token.strip(",;()")
            first = token.split("/", 1)[0]
            if first in ("", ".", "..") or "/" not in token:
                continue  # absolute, or outside the repository (../shared/...)
            if first in TOP_DIRS or (page.parent / first).is_dir():
                out.append(token)
    return out


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_repository_paths_exist(page):
    missing = []
    for token in repo_paths(page):
        base = ROOT if token.split("/", 1)[0] in TOP_DIRS else page.parent
        if not list(base.glob(token.rstrip("/"))):
            missing.append(token)
    assert not missing, f"{rel(page)} names paths that do not exist: {missing}"


def test_readme_links_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    missing = [rel(p) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


LAYOUT = DOCS / "layout.md"


def test_layout_lists_every_package():
    tree = next(b for b in code_blocks(LAYOUT.read_text()) if "llm_gateway/" in b.body)
    listed = set(re.findall(r"^  ([a-z_]+)/", tree.body, re.M))
    packages = {p.parent.name for p in (ROOT / "llm_gateway").glob("*/__init__.py")}
    assert listed == packages, (f"{rel(LAYOUT)}: not listed {sorted(packages - listed)}, "
                                f"no such package {sorted(listed - packages)}")


def test_layout_states_the_import_layers_in_order():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["type"] == "layers")
    layers = [set(re.split(r"\s*[|:]\s*", layer)) for layer in contract["layers"]]
    m = re.search(r"top to bottom: ([^.]*)\.", " ".join(LAYOUT.read_text().split()))
    assert m, f"{rel(LAYOUT)} does not state the layers ('top to bottom: a, b > c > ...')"
    order = m.group(1)
    stated = [{w.strip() for w in part.split(",")} for part in order.split(">")]
    assert stated == layers, f"{rel(LAYOUT)} says {stated}, pyproject has {layers}"
