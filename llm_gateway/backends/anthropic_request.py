"""An OpenAI chat-completions body -> an Anthropic Messages API body (docs/providers.md).

Every top-level field is either translated, accepted because its value asks for nothing
(null, or OpenAI's own default such as `n: 1`), or refused with a 400 naming it: a field that
would change the answer cannot be dropped on the way. `temperature` above 1 is refused, not
clamped or rescaled: Anthropic's range is 0..1, and a rescaled value would change every
request's sampling, a clamped one the meaning of the client's choice.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.backends.anthropic_messages import invalid, translate_messages, unsupported
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 4096  # upstreams.<name>.default_max_tokens when unset

# Fields translated below (or read by the gateway itself: stream_options asks for usage).
_TRANSLATED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
    "user", "safety_identifier",
})
# Fields accepted when they hold the value that asks for nothing beyond the default.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "logit_bias": ({},),
    "response_format": ({"type": "text"},),
    "store": (False,),
    "metadata": ({},),
    "modalities": (["text"],),
    "service_tier": ("auto",),
}
# Why a field has no equivalent, where a word helps.
_WHY = {
    "n": "Anthropic returns one choice per request.",
    "logprobs": "Anthropic returns no log probabilities.",
    "top_logprobs": "Anthropic returns no log probabilities.",
    "response_format": "structured output formats are not translated (use a tool instead).",
    "functions": "the deprecated functions API is not translated (use tools).",
    "function_call": "the deprecated functions API is not translated (use tool_choice).",
    "store": "Anthropic does not store completions.",
    "metadata": "OpenAI's metadata tags stored completions; Anthropic's takes a user id "
                "only (send `user`).",
}


def messages_request(body: dict[str, Any], model: str, default_max_tokens: int,
                     *, stream: bool) -> dict[str, Any]:
    """The Messages API body for `body`, sent for `model`; InvalidRequest (400) naming the
    field when something cannot be translated."""
    for key, value in body.items():
        if key in _TRANSLATED or value is None:
            continue
        if key in _NEUTRAL and any(_same(value, ok) for ok in _NEUTRAL[key]):
            continue
        raise unsupported(key, _WHY.get(key, "the field has no Anthropic equivalent."))
    system, turns = translate_messages(body.get("messages"))
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        out["system"] = system
    out["messages"] = turns
    _sampling(body, out)
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        if not all(isinstance(s, str) for s in stop):
            raise invalid("stop", "'stop' must be a string or an array of strings.")
        out["stop_sequences"] = stop
    elif stop is not None and not isinstance(stop, list):
        raise invalid("stop", "'stop' must be a string or an array of strings.")
    _tools(body, out)
    user = body.get("safety_identifier") or body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("user", "'user' must be a string.")
        if user:
            out["metadata"] = {"user_id": user}
    if stream:
        out["stream"] = True
    return out


def _same(value: Any, neutral: Any) -> bool:
    # `type(...) is bool` keeps False from equalling 0 (and True from 1).
    return (type(value) is bool) == (type(neutral) is bool) and value == neutral


def _max_tokens(body: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise invalid(key, f"'{key}' must be a positive integer.")
        return value
    return default  # Anthropic requires max_tokens: the upstream's configured default


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None:
        if type(temperature) not in (int, float) or temperature < 0:
            raise invalid("temperature", "'temperature' must be a number >= 0.")
        if temperature > 1:
            raise unsupported("temperature", f"Anthropic's temperature ranges from 0 to 1 "
                              f"(OpenAI's to 2); got {temperature}. Send a value of at most 1.",
                              code="unsupported_value")
        out["temperature"] = temperature
    for key, kind in (("top_p", (int, float)), ("top_k", (int,))):
        value = body.get(key)
        if value is None:
            continue
        if type(value) not in kind:
            raise invalid(key, f"'{key}' must be a number.")
        out[key] = value


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("tools", "'tools' must be an array.")
    if tools:
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice"), bool(tools))
    if body.get("parallel_tool_calls") is False and tools:
        # Anthropic says it on the tool choice; `none` allows no call at all anyway.
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise unsupported(f"{where}.type", f"tools of type {clip(kind)!r} have no equivalent "
                          "(function tools are translated).", code="unsupported_value")
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str):
        raise invalid(f"{where}.function", f"'{where}.function' needs a name.")
    if function.get("strict"):
        raise unsupported(f"{where}.function.strict", "Anthropic does not guarantee that a "
                          "tool call's arguments follow the schema (send strict: false).")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}  # OpenAI's meaning of no parameters
    elif not isinstance(schema, dict):
        raise invalid(f"{where}.function.parameters",
                      f"'{where}.function.parameters' must be a JSON schema object.")
    out: dict[str, Any] = {"name": name, "input_schema": schema}
    description = function.get("description")
    if isinstance(description, str) and description:
        out["description"] = description
    return out


def _tool_choice(choice: Any, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("none", "auto"):
        # Without tools, both mean what sending no tool_choice means.
        return {"type": choice} if has_tools else None
    if choice == "required":
        mapped: dict[str, Any] = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise invalid("tool_choice.function.name", "'tool_choice.function.name' must be a "
                          "string.")
        mapped = {"type": "tool", "name": name}
    else:
        raise unsupported("tool_choice", f"tool_choice {clip(choice)!r} has no equivalent "
                          "(none, auto, required or a named function are translated).",
                          code="unsupported_value")
    if not has_tools:
        raise InvalidRequest("'tool_choice' requires 'tools'.", param="tool_choice",
                             code="invalid_value")
    return mapped
