"""The console ships inside the package: every template and static file is package data, and
nothing it serves comes from elsewhere (no CDN, no build step)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "llm_gateway" / "console"


def test_templates_and_static_files_are_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["llm_gateway"]
    files = [p.relative_to(ROOT / "llm_gateway").as_posix()
             for folder in ("templates", "static") for p in (CONSOLE / folder).iterdir()]
    assert files
    assert [f for f in files if not any(fnmatch(f, g) for g in globs)] == []


def test_pages_load_nothing_from_another_origin():
    remote = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|import\s[^;]*["']https?://""")
    for path in [*(CONSOLE / "templates").iterdir(), *(CONSOLE / "static").iterdir()]:
        assert not remote.search(path.read_text()), path.name
