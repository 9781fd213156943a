"""Reading the Markdown docs (README.md, docs/*.md, k8s/README.md) for the drift checks."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def doc_files() -> list[Path]:
    """Every page the checks read: the front page, the docs, the manifests' README."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "k8s" / "README.md"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


FENCE = re.compile(r"^(```+|~~~+)[ \t]*([\w+-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # of the opening fence, 1-based
    before: str  # the nearest non-empty line above the fence


def code_blocks(text: str) -> list[Block]:
    blocks = []
    for m in FENCE.finditer(text):
        head = text[: m.start()]
        above = [ln for ln in head.splitlines() if ln.strip()]
        blocks.append(Block(m.group(2), m.group(3), head.count("\n") + 1,
                            above[-1].strip() if above else ""))
    return blocks


def prose(text: str) -> str:
    """The text with fenced code blocks blanked out (line numbers kept)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def code_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks, with table-escaped pipes unescaped."""
    return [m.group(2).strip().replace("\\|", "|") for m in SPAN.finditer(prose(text))]


def table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row (header and separator rows included)."""
    rows = []
    for line in prose(text).splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = re.split(r"(?<!\\)\|", line[1:-1])
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def unquote(cell: str) -> str | None:
    """The text of a cell that is one code span, else None."""
    m = re.fullmatch(r"`([^`]+)`", cell.strip())
    return m.group(1) if m else None


# --- the configuration schema ------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def yaml_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_container(tp: Any) -> bool:
    tp = _unwrap(tp)
    return dataclasses.is_dataclass(tp) or (
        get_origin(tp) in (dict, list) and dataclasses.is_dataclass(get_args(tp)[-1]))


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "required"})()


def schema_leaves(root: type) -> dict[str, tuple[Any, Any]]:
    """Canonical key path -> (type, default) for every YAML key that holds a value.

    Canonical paths write a mapping's key as ``*`` and a list's index as ``[]``:
    ``upstreams.*.timeouts.connect``, ``models[].name``.
    """
    out: dict[str, tuple[Any, Any]] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        for f in yaml_fields(cls):
            path = f"{prefix}.{f.name}" if prefix else f.name
            tp = _unwrap(hints[f.name])
            if dataclasses.is_dataclass(tp):
                walk(tp, path)  # type: ignore[arg-type]
            elif get_origin(tp) is dict and dataclasses.is_dataclass(get_args(tp)[1]):
                walk(get_args(tp)[1], path + ".*")
            elif get_origin(tp) is list and dataclasses.is_dataclass(get_args(tp)[0]):
                walk(get_args(tp)[0], path + "[]")
            else:
                out[path] = (hints[f.name], _default(f))

    walk(root, "")
    return out


SEGMENT = re.compile(r"\[[^\]]*\]|[^.\[\]]+")


def resolve(root: type, path: str | list[str]) -> tuple[str, bool] | None:
    """A documented key path -> (canonical path, is a leaf); None when no such key exists.

    Any segment may name a mapping's key (``teams.research``, ``teams.<name>``), and
    ``[2]`` or ``[]`` a list's item. A list of segments may hold keys with dots in them.
    """
    tp: Any = root
    out = ""
    for seg in SEGMENT.findall(path) if isinstance(path, str) else path:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp):
            names = {f.name: f for f in yaml_fields(tp)}  # type: ignore[arg-type]
            if seg not in names:
                return None
            tp = _hints(tp)[seg]  # type: ignore[arg-type]
            out = f"{out}.{seg}" if out else seg
        elif get_origin(tp) is dict:
            if seg.startswith("["):
                return None
            tp = get_args(tp)[1]
            out += ".*"
        elif get_origin(tp) is list:
            if not re.fullmatch(r"\[\d*\]", seg):
                return None
            tp = get_args(tp)[0]
            out += "[]"
        else:
            return None  # past a value
    return out, not _is_container(tp) and not dataclasses.is_dataclass(_unwrap(tp))


def literal_choices(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    return get_args(tp) if get_origin(tp) is Literal else ()
