"""A chat request's `tools`, `tool_choice` and `parallel_tool_calls` -> what the worker does.

- `auto` (the default with tools): the tools are rendered, the model writes text or calls in
  its own syntax, and the output is parsed as it comes.
- `required` / a named function: as auto, plus a grammar that admits only calls (of that
  function) in the model's syntax, so the call is certain and its arguments match the schema.
- `none`: no tools are rendered and nothing is parsed: a plain chat answer.

`parallel_tool_calls: false` keeps one call: the grammar admits one, and without a grammar
the generation is stopped once the first call is complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.errors import InvalidRequest
from llm_gateway.worker.toolcalls.formats import Syntax
from llm_gateway.worker.toolcalls.grammar import GrammarError, call_grammar
from llm_gateway.worker.toolcalls.parsers import ToolParser

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(slots=True)
class ToolPlan:
    syntax: Syntax
    tools: list[dict]  # as the request gave them (OpenAI `{"type": "function", ...}`)
    choice: str  # "auto" | "required" | "named"
    parallel: bool
    grammar: str | None  # set when a call is forced
    must_call: str | None  # the sentence a model without tool template is told, if forced
    markers: dict[int, str] = field(default_factory=dict)  # control-token id -> its text

    def parser(self) -> ToolParser:
        return self.syntax.parser(self.parallel)


def _functions(tools: Any) -> list[dict]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array.", param="tools", code="invalid_value")
    functions = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequest(f"Only function tools are supported by this model, not "
                                 f"{kind!r}.", param=f"tools[{i}].type",
                                 code="unsupported_value")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not _NAME.match(function["name"]):
            raise InvalidRequest("A function's name must be 1 to 64 letters, digits, "
                                 "underscores or dashes.", param=f"tools[{i}].function.name",
                                 code="invalid_value")
        if function.get("parameters") is not None \
                and not isinstance(function["parameters"], dict):
            raise InvalidRequest("A function's parameters must be a JSON schema object.",
                                 param=f"tools[{i}].function.parameters",
                                 code="invalid_value")
        functions.append(function)
    return functions


def _choice(raw: Any, functions: list[dict]) -> tuple[str, list[dict]]:
    """The mode, and the functions a forced call may be of."""
    if raw is None or raw == "auto":
        return "auto", functions
    if raw in ("none", "required"):
        return raw, functions
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = (raw.get("function") or {}).get("name")
        chosen = [f for f in functions if f["name"] == name]
        if not chosen:
            raise InvalidRequest(f"tool_choice names the function {name!r}, which is not "
                                 "among the tools.", param="tool_choice",
                                 code="invalid_value")
        return "named", chosen
    raise InvalidRequest("tool_choice must be 'none', 'auto', 'required' or "
                         "{'type': 'function', 'function': {'name': ...}}.",
                         param="tool_choice", code="invalid_value")


def tool_plan(body: dict, syntax: Syntax) -> ToolPlan | None:
    """What the request's tools ask for; None when there are none (or tool_choice none)."""
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise InvalidRequest("functions and function_call are not supported by this model; "
                             "use tools and tool_choice.", param="functions",
                             code="unsupported_parameter")
    tools = body.get("tools")
    if not tools:
        if body.get("tool_choice") not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools.", param="tool_choice",
                                 code="invalid_value")
        return None
    functions = _functions(tools)
    choice, allowed = _choice(body.get("tool_choice"), functions)
    if choice == "none":
        return None
    parallel = body.get("parallel_tool_calls") is not False and not syntax.single
    grammar = must_call = None
    if choice != "auto":
        if body.get("response_format") and \
                (body["response_format"].get("type") or "text") != "text":
            raise InvalidRequest("response_format cannot be combined with a required or "
                                 "named tool_choice.", param="response_format",
                                 code="invalid_value")
        try:
            grammar = call_grammar(syntax, allowed, parallel)
        except GrammarError as exc:
            index = functions.index(allowed[exc.index])
            raise InvalidRequest(f"The parameters schema of tools[{index}] {exc}",
                                 param=f"tools[{index}].function.parameters",
                                 code="invalid_value") from None
        must_call = f"You must call the function {allowed[0]['name']}." \
            if choice == "named" else "You must call one of the functions."
    return ToolPlan(syntax, list(tools), choice, parallel, grammar, must_call)
