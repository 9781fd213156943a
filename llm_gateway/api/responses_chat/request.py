"""A Responses API request body as a chat completions body.

Translated: `input` and the conversation before it (items.py), `instructions` (a system
message first; those of earlier turns are not carried, as OpenAI does), function `tools`,
`tool_choice` (`allowed_tools` narrows the tool list), `parallel_tool_calls`, `text.format`
(json_schema, json_object) -> `response_format`, `text.verbosity`, `max_output_tokens` ->
`max_tokens`, `reasoning.effort` -> `reasoning_effort`, logprobs (when `include` asks for
them), and the fields chat has under the same name. `metadata` and `store` stay with the
gateway (the response keeps them), `stream_options` becomes the chat stream's usage report.

Refused with a 400 naming the field: what chat completions cannot do (built-in tools,
`background`, `conversation`, `prompt` templates, `context_management`, `truncation: auto`,
reasoning summaries). A field this module does not know is passed on as it came: it may be
the backend's own extension.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

# Chat completions has these under the same name and meaning.
SAME = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
        "prompt_cache_retention", "prompt_cache_options", "service_tier", "moderation")
# Responses fields handled here (translated, kept by the gateway, or refused).
HANDLED = frozenset({
    "model", "input", "instructions", "previous_response_id", "store", "stream",
    "stream_options", "tools", "tool_choice", "parallel_tool_calls", "text",
    "max_output_tokens", "metadata", "include", "reasoning", "truncation", "background",
    "max_tool_calls", "top_logprobs", "conversation", "prompt", "context_management", *SAME})
# No chat equivalent: refused when set (a value of None is the same as leaving it out).
_REFUSED = {
    "conversation": "Conversations are not available for this model; use "
                    "previous_response_id or send the whole input.",
    "prompt": "Prompt templates are not available for this model; send the input itself.",
    "context_management": "Context management has no chat completions equivalent.",
}
LOGPROBS = "message.output_text.logprobs"


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def chat_body(body: dict[str, Any], messages: list[dict], model: str) -> dict[str, Any]:
    """The chat completions body for `body` (a validated Responses request), whose
    conversation, instructions included, is `messages`."""
    for name, why in _REFUSED.items():
        if body.get(name) is not None:
            raise _refuse(why, name)
    if body.get("background"):
        raise _refuse("Background responses are not available for this model.", "background")
    if body.get("truncation") not in (None, "disabled"):
        raise _refuse("Only truncation 'disabled' is available for this model.", "truncation")
    chat: dict[str, Any] = {k: v for k, v in body.items() if k not in HANDLED}  # extensions
    chat["model"] = model
    chat["messages"] = messages
    for name in SAME:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    _reasoning(body.get("reasoning"), chat)
    _text(body.get("text"), chat)
    _tools(body, chat)
    include = body.get("include") or ()
    if LOGPROBS in include:
        chat["logprobs"] = True
        if body.get("top_logprobs") is not None:
            chat["top_logprobs"] = body["top_logprobs"]
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the usage of response.completed
    return chat


def instructions(body: dict[str, Any]) -> list[dict]:
    value = body.get("instructions")
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise InvalidRequest("instructions must be a string.", param="instructions",
                             code="invalid_type")
    return [{"role": "system", "content": value}]


def _reasoning(reasoning: Any, chat: dict[str, Any]) -> None:
    if not isinstance(reasoning, dict):
        return
    for name in ("summary", "generate_summary"):
        if reasoning.get(name) is not None:
            raise _refuse("Reasoning summaries are not available for this model.",
                          f"reasoning.{name}")
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]


def _text(text: Any, chat: dict[str, Any]) -> None:
    if not isinstance(text, dict):
        return
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema")}
        for name in ("description", "strict"):
            if fmt.get(name) is not None:
                schema[name] = fmt[name]
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise _refuse(f"text.format type '{clip(kind)}' has no chat completions equivalent.",
                      "text.format.type")


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    functions = [_function(tool, i) for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or () if isinstance(t, dict)}
        functions = [f for f in functions if f["function"]["name"] in allowed]
        choice = choice.get("mode") or "auto"
    if not functions:
        if choice in ("required",) or isinstance(choice, dict):
            raise InvalidRequest("tool_choice names a tool, but no function tools are given.",
                                 param="tool_choice", code="invalid_value")
        return
    chat["tools"] = functions
    if choice is not None:
        chat["tool_choice"] = _choice(choice)
    if body.get("parallel_tool_calls") is not None:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]


def _function(tool: Any, i: int) -> dict:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise _refuse(f"Tools of type '{clip(kind)}' are not available for this model: only "
                      "function tools are.", f"tools[{i}].type")
    assert isinstance(tool, dict)
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        raise InvalidRequest(f"tools[{i}].name must be a non-empty string.",
                             param=f"tools[{i}].name", code="invalid_value")
    function = {"name": tool["name"]}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise _refuse(f"tool_choice '{clip(kind)}' is not available for this model: only auto, "
                  "none, required, a function or allowed_tools are.", "tool_choice")
