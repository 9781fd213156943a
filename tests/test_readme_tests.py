"""README's test command is what CI runs, and it needs nothing README does not install.

The rule: `pip install -e ".[dev]"` brings every Python library the tests import (the other
extras included), so README's two lines run the whole suite on a fresh machine; only the
PostgreSQL and Redis servers are optional outside CI (tests/services.py).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def readme_test_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README's Tests section has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def ci_commands() -> list[str]:
    """.ci/run's commands, a line continued with a backslash joined to the next."""
    text = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    return [" ".join(ln.split()) for ln in text.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_ci_ends_with_readmes_test_command_verbatim():
    block = readme_test_block()
    assert block and any("pytest" in line for line in block)
    assert ci_commands()[-len(block):] == block


def test_ci_installs_from_pypi_only_what_the_dev_extra_brings():
    # Anything more would pass in CI and be missing for README's command.
    pip = re.compile(r"(pip_install|pip install|python -m pip install) ")
    installs = [c for c in ci_commands() if pip.match(c)]
    assert installs, "no pip install in .ci/run"
    for command in installs:
        words = command.split("#")[0].split()
        if "--force-reinstall" in words and "--no-deps" in words:
            # A rebuild of what .[dev] installed (llama-cpp-python without AMX): nothing new.
            (target,) = [w for w in words[1:] if not w.startswith("-")]
            name = re.split(r"[=<>~!;\[ ]", target.strip('"'))[0]
            assert canonicalize_name(name) in _closure({"dev"}), command
            continue
        assert words[-1] == '".[dev]"', command


def _imported_top_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party_imports() -> dict[str, Path]:
    files = sorted((ROOT / "tests").rglob("*.py"))
    local = {f.stem for f in files} | {d.name for d in (ROOT / "tests").rglob("*") if d.is_dir()}
    found: dict[str, Path] = {}
    for f in files:
        for name in _imported_top_names(f):
            if name in sys.stdlib_module_names or name in local or name in ("llm_gateway",
                                                                             "__future__"):
                continue
            found.setdefault(name, f)
    return found


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])


def _requires(name: str) -> list[str]:
    """A distribution's requirements; ours as pyproject.toml says now, not as installed."""
    if canonicalize_name(name) == NAME:
        extras = PROJECT.get("optional-dependencies", {})
        return [*PROJECT["dependencies"],
                *(f"{spec}; extra == '{extra}'" for extra, specs in extras.items()
                  for spec in specs)]
    try:
        return metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return []


def _closure(extras: set[str], project: str = NAME) -> set[str]:
    """Every distribution that installing project[extras] brings, by canonical name."""
    seen: set[str] = set()
    todo = [(project, frozenset(extras))]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in visited:
            continue
        visited.add((name, wanted))
        seen.add(canonicalize_name(name))
        for spec in _requires(name):
            req = Requirement(spec)
            envs = [{"extra": e} for e in (wanted | {""})]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_dev_extra_brings_every_library_the_tests_import():
    dists = metadata.packages_distributions()
    closure = _closure({"dev"})
    missing = []
    for module, where in sorted(_third_party_imports().items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        if not owners & closure:
            missing.append(f"{module} (imported by {where.relative_to(ROOT)})")
    assert not missing, f"not brought by .[dev]: {', '.join(missing)}"


def test_the_dev_extra_includes_every_other_extra():
    # The gateway imports asyncpg, redis and llama_cpp lazily, so the tests that exercise
    # them would not show up in the scan above.
    closure = _closure({"dev"})
    for extra in set(PROJECT.get("optional-dependencies", {})) - {"dev"}:
        assert _closure({extra}) <= closure, f"dev lacks the {extra!r} extra"
