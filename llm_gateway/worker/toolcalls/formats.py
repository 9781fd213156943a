"""The native tool-call syntaxes: which one a chat template teaches, and how each is written.

The syntax is picked from the chat template's text (`detect`), unless the worker is told
(`--tool-format`, `tool_format:` in a `local:` entry):

- `[TOOL_CALLS]` in the template: `mistral` (Mistral's v0.3 tokenizer family).
- `<tool_call>`: `hermes` (Hermes 2 Pro, Qwen2.5, Qwen3, and their fine-tunes).
- `<|python_tag|>`, or Llama 3's `<|start_header_id|>` with `"parameters"`: `llama3`.
- anything else, or no template: `hermes`, which small chat models follow best when told.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass

from llm_gateway.worker.toolcalls.parsers import PARSERS, ToolParser

FORMATS = ("hermes", "llama3", "mistral")
_ALPHANUMERIC = string.ascii_letters + string.digits


def detect(template: str | None) -> str:
    """The tool-call syntax a chat template's text teaches (see the module's doc)."""
    text = template or ""
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<tool_call>" in text:
        return "hermes"
    if "<|python_tag|>" in text or ("<|start_header_id|>" in text and "parameters" in text):
        return "llama3"
    return "hermes"


def renders_tools(template: str | None) -> bool:
    """Whether the template reads the `tools` variable (HF's convention for tool lists)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Syntax:
    name: str
    arguments_key: str  # the key the call object gives the arguments under
    markers: tuple[str, ...]  # texts that may be single (control) tokens of the model
    single: bool = False  # one call per turn at most (the template renders no more)

    def parser(self, parallel: bool) -> ToolParser:
        return PARSERS[self.name](parallel and not self.single)

    def new_id(self) -> str:
        """A call id as the model's template accepts them back (Mistral: 9 alphanumerics)."""
        if self.name == "mistral":
            return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(9))
        return "call_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(24))

    def call_object(self, name: str, arguments: str) -> str:
        """One call's JSON text, name first (`arguments`: JSON text, kept as written)."""
        return '{"name": ' + _json(name) + ', "' + self.arguments_key + '": ' + arguments + "}"

    def calls_text(self, calls: list[tuple[str, str]]) -> str:
        """(name, arguments JSON) pairs in this syntax, as the model would write them."""
        objects = [self.call_object(name, args) for name, args in calls]
        if self.name == "mistral":
            return "[TOOL_CALLS][" + ", ".join(objects) + "]"
        if self.name == "llama3":
            return "; ".join(objects)
        return "\n".join(f"<tool_call>\n{obj}\n</tool_call>" for obj in objects)

    def grammar_root(self, call_rule: str, parallel: bool) -> str:
        """The GBNF `root` rule forcing one call (or, with `parallel`, one or more)."""
        if self.name == "mistral":
            more = f' ("," " " {call_rule})*' if parallel else ""
            return f'root ::= "[TOOL_CALLS][" {call_rule}{more} "]"'
        if self.name == "llama3":
            return f"root ::= {call_rule}"
        block = f'"<tool_call>\\n" {call_rule} "\\n</tool_call>"'
        more = f' ("\\n" {block})*' if parallel else ""
        return f"root ::= {block}{more}"

    def instructions(self, tools: list[dict]) -> str:
        """What a model whose template knows no tools is told, in a system message."""
        listing = "\n".join(_json(tool) for tool in tools)
        example = self.calls_text([("<function name>", "<arguments as a JSON object>")])
        many = "" if self.single else " Write one such call for each function to call."
        return ("You can call functions to answer. These are the functions you can call "
                f"(JSON schemas):\n{listing}\n\nTo call a function, answer with exactly:\n"
                f"{example}\n{many}".rstrip())

    def result_text(self, content: str) -> str:
        """A tool's result as the model is shown it when the template has no tool role."""
        return f"<tool_response>\n{content}\n</tool_response>"


SYNTAXES = {
    "hermes": Syntax("hermes", "arguments", ("<tool_call>", "</tool_call>")),
    "llama3": Syntax("llama3", "parameters", ("<|python_tag|>",), single=True),
    "mistral": Syntax("mistral", "arguments", ("[TOOL_CALLS]",)),
}


def syntax_for(name: str | None, template: str | None) -> Syntax:
    """The configured syntax (None or "auto": detected from the template)."""
    if name in (None, "auto"):
        return SYNTAXES[detect(template)]
    if name not in SYNTAXES:
        raise ValueError(f"unknown tool format {name!r} (known: auto, {', '.join(FORMATS)})")
    return SYNTAXES[name]
