"""Every `llm-gateway ...` command the docs show parses as the CLI defines it, and
docs/cli.md shows every subcommand with every option."""

from __future__ import annotations

import argparse
import re

import pytest

from llm_gateway.cli.main import _parser

from docs_support import DOCS, ROOT, code_blocks, code_spans, doc_files, rel

PAGE = DOCS / "cli.md"
INVOCATION = re.compile(r"(?:(?<![\w/.:-])llm-gateway|python -m llm_gateway)(?= [a-z-])(.*)")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
           ) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    subs = subparsers(parser)
    if not subs:
        return {path: parser}
    out = {}
    for name, sub in subs.items():
        out.update(leaves(sub, (*path, name)))
    return out


def commands(text: str) -> list[str]:
    """What follows `llm-gateway` in each invocation in code spans and shell blocks."""
    lines = list(code_spans(text))
    for block in code_blocks(text):
        if block.lang in ("", "bash", "sh", "shell", "console"):
            lines += block.body.replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        for m in INVOCATION.finditer(line):
            found.append(m.group(1).split(" #")[0].split("`")[0])
    return found


def walk(command: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """The subcommands a command line reaches, and what in it the CLI would not take.

    `a|b` alternatives and `keys show|disable KEY` are read as several commands.
    """
    root = _parser()
    tokens = re.findall(r"--?[\w-]+|\||[^\s|\[\]]+", command)
    stack: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), root)]
    reached, problems = [], []
    for i, tok in enumerate(tokens):
        path, parser = stack[-1]
        if tok == "|":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if len(stack) > 1 and nxt in subparsers(stack[-2][1]):
                stack.pop()
            continue
        subs = subparsers(parser)
        if tok.startswith("-"):
            if tok.startswith("--") and tok not in options(parser):
                problems.append(f"{' '.join(path) or 'llm-gateway'}: no option {tok}")
        elif subs:
            if tok in subs:
                stack.append(((*path, tok), subs[tok]))
                reached.append((*path, tok))
            elif not tokens[i - 1].startswith("-") if i else True:
                problems.append(f"{' '.join(path) or 'llm-gateway'}: no subcommand {tok!r}")
    return reached, problems


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_command_in_the_docs_exists(page):
    problems = []
    for command in commands(page.read_text()):
        problems += [f"llm-gateway{command}: {p}" for p in walk(command)[1]]
    assert not problems, f"{rel(page)}:\n" + "\n".join(problems)


def test_the_cli_page_shows_every_subcommand_and_option():
    text = PAGE.read_text()
    reached = {path for command in commands(text) for path in walk(command)[0]}
    missing = []
    for path in leaves(_parser()):
        if path not in reached:
            missing.append("llm-gateway " + " ".join(path))
    # Options are looked for in the page's code: its invocations and its option tables.
    spans = " ".join([*code_spans(text), *commands(text)])
    for path, parser in leaves(_parser()).items():
        for opt in sorted(options(parser) - {"-h", "--help"}):
            if not re.search(re.escape(opt) + r"(?![\w-])", spans):
                missing.append(f"llm-gateway {' '.join(path)} {opt}")
    assert not missing, f"not shown in {rel(PAGE)}: {missing}"


BENCH = re.compile(r"(bench/[\w/]+\.py)([^`\n]*)")


@pytest.mark.parametrize("page", doc_files(), ids=rel)
def test_every_benchmark_option_the_docs_show_exists(page):
    text = page.read_text()
    lines = [*code_spans(text), *(ln for b in code_blocks(text) for ln in b.body.splitlines())]
    wrong = []
    for line in lines:
        for script, rest in BENCH.findall(line):
            source = (ROOT / script).read_text() if (ROOT / script).is_file() else ""
            for opt in re.findall(r"(?<![\w-])--[\w-]+", rest.split(" #")[0]):
                if f'"{opt}"' not in source:
                    wrong.append(f"{script} {opt}")
    assert not wrong, f"{rel(page)} shows options the scripts lack: {wrong}"
