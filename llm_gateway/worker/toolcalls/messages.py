"""Tool definitions, calls and results in a chat's messages, made ready for the template.

Two cases, decided by the template's text (`formats.renders_tools`):

- The template renders tools itself (Qwen2.5, Llama 3.1, Mistral v0.3, ...): it gets the
  tools as `tools` (HF's convention) and the history as OpenAI sends it, with each call's
  `arguments` turned from JSON text into the object the templates write back with `tojson`,
  and, for Mistral, call ids as its template requires them (9 alphanumerics: other ids are
  mapped, the same way in the call and in its result).
- It does not (SmolLM2's, plain ChatML, a named llama-cpp-python format): the tools and how
  to call them are described in the system message, past calls are written into the
  assistant's text in the model's syntax, and results become user messages.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from llm_gateway.worker.toolcalls.formats import Syntax

_MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")


def _arguments_object(arguments: Any) -> Any:
    """JSON text -> its object (templates `tojson` it); anything else is left alone."""
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            return arguments
        return value if isinstance(value, dict) else arguments
    return arguments


def _mistral_id(call_id: Any) -> Any:
    if not isinstance(call_id, str) or _MISTRAL_ID.match(call_id):
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


def _calls(message: dict) -> list[dict]:
    return [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]


def native(messages: list[dict], syntax: Syntax) -> list[dict]:
    """The history for a template that renders tools, calls and results itself."""
    out = []
    mistral = syntax.name == "mistral"
    for message in messages:
        message = dict(message)
        calls = _calls(message)
        if calls:
            fixed = []
            for call in calls:
                call = dict(call)
                function = dict(call.get("function") or {})
                function["arguments"] = _arguments_object(function.get("arguments"))
                call["function"] = function
                if mistral:
                    call["id"] = _mistral_id(call.get("id"))
                fixed.append(call)
            message["tool_calls"] = fixed
        else:
            message.pop("tool_calls", None)  # Llama 3.1's template tests for the key
        if mistral and "tool_call_id" in message:
            message["tool_call_id"] = _mistral_id(message["tool_call_id"])
        out.append(message)
    return out


def described(messages: list[dict], syntax: Syntax, tools: list[dict] | None,
              must_call: str | None) -> list[dict]:
    """The history for a template that knows no tools: everything in plain messages.

    `tools`: those offered (None: none, as with tool_choice none); `must_call`: what the
    system message adds when a call is forced.
    """
    out: list[dict] = []
    for message in messages:
        role = message.get("role")
        calls = _calls(message)
        if role == "assistant" and calls:
            pairs = []
            for call in calls:
                function = call.get("function") or {}
                arguments = function.get("arguments")
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments if arguments is not None else {})
                pairs.append((str(function.get("name", "")), arguments))
            text = syntax.calls_text(pairs)
            content = message.get("content") or ""
            out.append({"role": "assistant",
                        "content": f"{content}\n{text}" if content else text})
        elif role == "tool":
            result = syntax.result_text(str(message.get("content") or ""))
            if out and out[-1].get("role") == "user" and out[-1].get("_results"):
                out[-1]["content"] += "\n" + result  # consecutive results: one message
            else:
                out.append({"role": "user", "content": result, "_results": True})
        else:
            message = dict(message)
            message.pop("tool_calls", None)
            out.append(message)
    for message in out:
        message.pop("_results", None)
    if tools:
        note = syntax.instructions(tools)
        if must_call:
            note += "\n" + must_call
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{note}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out
