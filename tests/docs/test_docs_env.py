"""Every environment variable the docs name is one something in the repository reads or sets:
the code, the manifests, the images, the scripts (LLM_GATEWAY__* overrides are checked
against the schema in test_docs_config.py)."""

from __future__ import annotations

import re

import pytest

from docs_support import ROOT, doc_files, rel

NAME = re.compile(r"(?<![\w-])\$?\{?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b(?!__)")
# Names the user picks: the value of an `*_env:` key, or `--upstream-key openai=NAME`.
CHOSEN = re.compile(r"_env:\s*([A-Z][A-Z0-9_]+)|--upstream-key\s+[\w-]+=([A-Z][A-Z0-9_]+)")
# Read by what the gateway runs on, not by the repository's own files.
PLATFORM = {
    "TMPDIR": "Python's tempfile: where multipart uploads are spooled",
    "OPENAI_BASE_URL": "the openai SDKs' base URL, for pointing existing clients at the gateway",
}
SOURCES = ["llm_gateway", "tests", "scripts", "k8s", "docker", "bench", ".ci"]
SINGLE_FILES = ["Tiltfile", "config.example.yaml", "pyproject.toml"]


def corpus() -> str:
    """Every non-Markdown text file that could read or set a variable (tests/docs excluded)."""
    parts = [(ROOT / f).read_text() for f in SINGLE_FILES]
    for top in SOURCES:
        for path in (ROOT / top).rglob("*"):
            if (not path.is_file() or path.suffix in (".md", ".pyc", ".gguf", ".xz")
                    or "docs" in path.relative_to(ROOT).parts[:2]):
                continue
            try:
                parts.append(path.read_text())
            except UnicodeDecodeError:
                continue
    return "\n".join(parts)


CORPUS = corpus()


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_environment_variable_the_docs_name_exists(page):
    text = page.read_text()
    chosen = {a or b for a, b in CHOSEN.findall(text)}
    names = {n for n in NAME.findall(text) if not n.startswith("LLM_GATEWAY__")}
    unknown = sorted(n for n in names - chosen - set(PLATFORM)
                     if not re.search(rf"\b{n}\b", CORPUS))
    assert not unknown, f"{rel(page)} names variables nothing reads or sets: {unknown}"
