"""docs/configuration.md lists every key the schema has, with its default, and no other; every
key, override and YAML snippet anywhere in the docs is one the gateway accepts."""

from __future__ import annotations

import re

import pytest
import yaml

from llm_gateway.config import ENV_PREFIX, ConfigError, parse_config
from llm_gateway.config.schema import Config

from docs_support import (
    DOCS,
    REQUIRED,
    Block,
    code_blocks,
    code_spans,
    doc_files,
    literal_choices,
    rel,
    resolve,
    schema_leaves,
    table_rows,
    unquote,
)

REFERENCE = DOCS / "configuration.md"
SECTIONS = {name for name in Config.__dataclass_fields__ if name != "source"}
FILE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".md", ".toml", ".gguf", ".db", ".sh")
# Put on the line above a ```yaml block that shows only part of a config: its keys are still
# checked against the schema, but it is not loaded as a whole.
PARTIAL = "<!-- partial config -->"


def reference_rows() -> dict[str, tuple[str, str]]:
    """Key path as written -> (its default cell, the canonical path), from the key tables."""
    rows = {}
    for cells in table_rows(REFERENCE.read_text()):
        key = unquote(cells[0]) if cells else None
        if key is None or len(cells) < 3:
            continue
        found = resolve(Config, key)
        rows[key] = (cells[1], found[0] if found else "")
    return rows


def test_every_schema_key_is_in_the_reference():
    documented = {canonical for _, canonical in reference_rows().values()}
    missing = sorted(set(schema_leaves(Config)) - documented)
    assert not missing, f"keys missing from {rel(REFERENCE)}'s tables: {missing}"


def test_every_key_in_the_reference_is_a_schema_key():
    leaves = schema_leaves(Config)
    unknown = sorted(key for key, (_, canonical) in reference_rows().items()
                     if canonical not in leaves)
    assert not unknown, f"{rel(REFERENCE)} documents keys the schema lacks: {unknown}"


def test_each_default_in_the_reference_is_the_schema_default():
    leaves = schema_leaves(Config)
    wrong = []
    for key, (cell, canonical) in reference_rows().items():
        if canonical not in leaves:
            continue  # the test above reports it
        tp, default = leaves[canonical]
        if default is REQUIRED:
            if cell != "required":
                wrong.append(f"{key}: the schema has no default, the page says {cell!r}")
            continue
        value = unquote(cell)
        written = yaml.safe_load(value) if value is not None else cell
        if written is False and "off" in literal_choices(tp):
            written = "off"
        if written != default or isinstance(written, bool) != isinstance(default, bool):
            wrong.append(f"{key}: schema {default!r}, page {cell!r}")
    assert not wrong, "\n".join(wrong)


KEY_TOKEN = re.compile(r"[a-z_]+(?:\[[^\]]*\])?(?:\.[\w<>*?-]+(?:\[[^\]]*\])?)+|[a-z_]+\[\d*\]\S*")


def named_keys(text: str) -> list[str]:
    """Config key paths written in code spans: `server.port`, `auth.mode: keys`."""
    found = []
    for span in code_spans(text):
        for token in re.split(r"[\s:=,()]+", span):
            m = KEY_TOKEN.fullmatch(token)
            if not m or token.endswith(FILE_SUFFIXES):
                continue
            if re.split(r"[.\[]", token, maxsplit=1)[0] in SECTIONS:
                found.append(token)
    return found


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_key_the_docs_name_exists(page):
    unknown = [key for key in named_keys(page.read_text()) if resolve(Config, key) is None]
    assert not unknown, f"{rel(page)} names keys the schema lacks: {unknown}"


OVERRIDE = re.compile(re.escape(ENV_PREFIX) + r"[A-Z0-9_]+")


def override_path(name: str) -> str:
    parts = name[len(ENV_PREFIX):].lower().split("__")
    return "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_env_override_the_docs_name_is_a_key(page):
    names = set(OVERRIDE.findall(page.read_text())) - {ENV_PREFIX}
    unknown = sorted(n for n in names if resolve(Config, override_path(n)) is None)
    assert not unknown, f"{rel(page)} names overrides of keys the schema lacks: {unknown}"


def yaml_blocks() -> list[tuple[str, Block]]:
    return [(f"{rel(page)}:{block.line}", block) for page in doc_files()
            for block in code_blocks(page.read_text()) if block.lang in ("yaml", "yml")]


def keys_in(data: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path in parsed YAML, as segments (list items as [i])."""
    out: list[tuple[str, ...]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*prefix, str(key)))
            out += keys_in(value, (*prefix, str(key)))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            out += keys_in(item, (*prefix, f"[{i}]"))
    return out


@pytest.mark.parametrize(("where", "block"), yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_yaml_snippets_parse_and_config_snippets_load(where, block):
    data = yaml.safe_load(block.body)
    if not isinstance(data, dict) or not set(data) <= SECTIONS:
        return  # YAML, but not a gateway config (a manifest, a rule): parsing was the check
    unknown = [".".join(key) for key in keys_in(data) if resolve(Config, list(key)) is None]
    assert not unknown, f"{where}: keys the schema lacks: {unknown}"
    if block.before == PARTIAL:
        return
    try:
        parse_config(data, env={})
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        raise AssertionError(f"{where}: does not load ({problems}); a fragment is marked "
                             f"{PARTIAL} on the line above") from None
