"""OpenAI chat `messages` -> Anthropic's `system` and `messages` (docs/providers.md#anthropic).

System and developer messages become the top-level `system` blocks (Anthropic has no system
turn), wherever they stand. Text and image parts become content blocks; an assistant's
`tool_calls` become `tool_use` blocks and `tool` messages `tool_result` blocks of a user turn.
Consecutive turns of one role are merged into one (the Messages API wants them alternating,
and the results of parallel tool calls must share one user turn). Anything with no Anthropic
equivalent is a 400 naming where it is (`unsupported`); nothing is silently dropped.
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

Block = dict[str, Any]
# Keys of an OpenAI message, by role, that carry something we translate; any other key with a
# value that is not null is refused.
_KEYS = {
    "system": {"role", "content"},
    "developer": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls"},
    "tool": {"role", "content", "tool_call_id"},
}
_PART_KEYS = {"text": {"type", "text", "cache_control"},
              "image_url": {"type", "image_url", "cache_control"}}


def unsupported(param: str, why: str, *, code: str = "unsupported_parameter") -> InvalidRequest:
    """The 400 for something Anthropic cannot do: which field, and why."""
    return InvalidRequest(f"'{clip(param)}' is not supported by Anthropic models: {why}",
                          param=param, code=code)


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def translate_messages(messages: Any) -> tuple[list[Block], list[dict[str, Any]]]:
    """(system blocks, turns) for an OpenAI `messages` list."""
    if not isinstance(messages, list):
        raise invalid("messages", "'messages' must be an array of messages.")
    system: list[Block] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = _checked(message, where, "role", _KEYS)
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content",
                                       "a system prompt"))
        elif role == "user":
            _add(turns, "user", _user_blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            _add(turns, "assistant", _assistant_blocks(message, where))
        else:
            _add(turns, "user", [_tool_result(message, where)])
    return system, turns


def _checked(obj: Any, where: str, tag: str, known: dict[str, set[str]]) -> str:
    """`obj`'s `tag` (a message's role, a part's type) once its keys are checked: an unknown
    tag, or a key outside what that tag translates holding something, is refused."""
    if not isinstance(obj, dict):
        raise invalid(where, f"'{where}' must be an object.")
    value = obj.get(tag)
    if not isinstance(value, str) or value not in known:
        raise unsupported(f"{where}.{tag}", f"{tag} {clip(value)!r} has no equivalent (these "
                          f"are translated: {', '.join(known)}).", code="unsupported_value")
    for key, item in obj.items():
        if key not in known[value] and not _neutral(item):
            raise unsupported(f"{where}.{key}", _why(key))
    return value


def _neutral(value: Any) -> bool:
    """A value that asks for nothing: null or empty (an SDK's own message object, sent back,
    has `refusal: null`, `annotations: []`...)."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def _why(key: str) -> str:
    if key == "name":
        return "Anthropic messages carry no participant name."
    if key in ("function_call", "audio"):
        return f"an assistant message's {key} has no equivalent (use tool_calls)."
    if key == "refusal":
        return "an assistant refusal cannot be sent back to Anthropic."
    return "the field has no Anthropic equivalent."


def _add(turns: list[dict[str, Any]], role: str, blocks: list[Block]) -> None:
    if not blocks:  # an empty message carries nothing; Anthropic refuses empty turns
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _parts(content: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """A message's content as (path, part) pairs: a string is one text part."""
    if isinstance(content, str):
        return [(where, {"type": "text", "text": content})]
    if content is None:
        return []
    if not isinstance(content, list):
        raise invalid(where, f"'{where}' must be a string or an array of content parts.")
    found = []
    for j, part in enumerate(content):
        path = f"{where}[{j}]"
        _checked(part, path, "type", _PART_KEYS)
        found.append((path, part))
    return found


def _text(part: dict[str, Any], path: str) -> Block | None:
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid(f"{path}.text", f"'{path}.text' must be a string.")
    if not text:
        return None  # Anthropic refuses empty text blocks; an empty one says nothing
    block: Block = {"type": "text", "text": text}
    _cache_control(part, block, path)
    return block


def _cache_control(part: dict[str, Any], block: Block, path: str) -> None:
    """Anthropic's prompt-caching marker, when a client sets it on a part (as LiteLLM's
    clients do): it is Anthropic's own field, so it goes on as given."""
    marker = part.get("cache_control")
    if marker is None:
        return
    if not isinstance(marker, dict):
        raise invalid(f"{path}.cache_control", f"'{path}.cache_control' must be an object.")
    block["cache_control"] = marker


def _text_blocks(content: Any, where: str, what: str) -> list[Block]:
    blocks = []
    for path, part in _parts(content, where):
        if part["type"] != "text":
            raise unsupported(f"{path}.type", f"only text can go in {what}.",
                              code="unsupported_value")
        block = _text(part, path)
        if block is not None:
            blocks.append(block)
    return blocks


def _user_blocks(content: Any, where: str) -> list[Block]:
    blocks = []
    for path, part in _parts(content, where):
        block = _text(part, path) if part["type"] == "text" else _image(part, path)
        if block is not None:
            blocks.append(block)
    return blocks


def _image(part: dict[str, Any], path: str) -> Block:
    """An image_url part: a data: URL becomes a base64 source, an http(s) URL a url source.
    `detail` is accepted and has no effect: Anthropic sizes images itself."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise invalid(f"{path}.image_url.url", f"'{path}.image_url.url' must be a string.")
    source: dict[str, Any]
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not media_type.startswith("image/"):
            raise invalid(f"{path}.image_url.url", "A data: URL image must be "
                          "data:image/<type>;base64,<data>.")
        try:
            binascii.a2b_base64(data[:4096].encode("ascii"))  # a cheap look at its head
        except (binascii.Error, UnicodeEncodeError):
            raise invalid(f"{path}.image_url.url", "The image's base64 data is not valid "
                          "base64.") from None
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise unsupported(f"{path}.image_url.url", "an image must be a data: URL or an "
                          "http(s) URL.", code="unsupported_value")
    block: Block = {"type": "image", "source": source}
    _cache_control(part, block, path)
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[Block]:
    blocks = _text_blocks(message.get("content"), f"{where}.content", "an assistant message")
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls", f"'{where}.tool_calls' must be an array.")
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, path: str) -> Block:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise unsupported(f"{path}.type", "only function tool calls are translated.",
                          code="unsupported_value")
    function = call.get("function")
    call_id = call.get("id")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise invalid(path, f"'{path}' needs an id and a function name.")
    arguments = function.get("arguments") if isinstance(function, dict) else None
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid(f"{path}.function.arguments", f"'{path}.function.arguments' must be a "
                      "JSON object (Anthropic takes a tool call's input as an object).")
    return {"type": "tool_use", "id": call_id, "name": name, "input": parsed}


def _tool_result(message: dict[str, Any], where: str) -> Block:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise invalid(f"{where}.tool_call_id", f"'{where}.tool_call_id' must be a string.")
    content = message.get("content")
    block: Block = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        texts = _text_blocks(content, f"{where}.content", "a tool result")
        if texts:
            block["content"] = texts
    return block
