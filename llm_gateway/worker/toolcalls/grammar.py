"""GBNF grammars that force a tool call (`tool_choice` required or named).

The grammar spells out the model's own syntax around the call (`formats.Syntax.
grammar_root`), the call object's keys in a fixed order (name first, so a stream can name
the call before its arguments come), and each tool's arguments from its JSON schema through
llama-cpp-python's schema converter. llama.cpp applies it in the sequence's sampler chain:
only tokens that keep the text inside the grammar can be drawn, and once it is complete only
the end of the turn.
"""

from __future__ import annotations

import json

from llama_cpp import llama_grammar

from llm_gateway.worker.toolcalls.formats import Syntax

# The converter lets JSON strings hold raw control characters, which strict JSON parsers
# (Python's json.loads, JavaScript's JSON.parse) refuse; llama.cpp's own converter excludes
# them, and so do we.
_LOOSE_CHAR = 'char ::= [^"\\\\] '
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] '


class GrammarError(ValueError):
    """A tool's parameters schema cannot be turned into a grammar."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


def _literal(text: str) -> str:
    # JSON's string escapes are also GBNF's (\", \\, \n, \uXXXX).
    return json.dumps(text)


def call_grammar(syntax: Syntax, functions: list[dict], parallel: bool) -> str:
    """A grammar whose texts are calls of the given functions (OpenAI `function` objects)."""
    converter = llama_grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False,
                                              raw_pattern=False)
    alternatives = []
    for i, function in enumerate(functions):
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        rule = f"args-{i}"
        try:
            converter.visit(converter.resolve_refs(schema, f"tool-{i}"), rule)
        except Exception as exc:  # an unsupported or broken schema
            raise GrammarError(i, f"cannot be turned into a grammar: {exc}") from None
        head = syntax.call_object(function["name"], "")[:-1]  # '{"name": "f", "arguments": '
        alternatives.append(f'{_literal(head)} {rule} "}}"')
    rules = converter.format_grammar().replace(_LOOSE_CHAR, _STRICT_CHAR)
    call = "call ::= " + " | ".join(f"({alt})" for alt in alternatives)
    return "\n".join([syntax.grammar_root("call", parallel), call, rules])
