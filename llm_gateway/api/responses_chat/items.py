"""Responses API items <-> chat completions messages.

`input_items` checks a request's `input` (a string, or a list of items) and gives each item
the shape and id OpenAI lists it with (`GET /v1/responses/{id}/input_items`); `chat_messages`
turns items (earlier turns' inputs and outputs, then this turn's input) into chat messages.

What chat can say: messages (text, images by URL, files), function calls and their outputs.
Reasoning items are left out of the chat (they carry a model's hidden state, which another
model cannot use); an `item_reference` is replaced by the item it names when that item is in
the conversation (`previous_response_id`); any other item type has no chat equivalent and is
a 400 naming it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

ROLES = frozenset({"user", "assistant", "system", "developer"})
_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
              "reasoning": "rs"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def as_dict(value: Any) -> dict:
    """`value` when it is an object, else an empty one (what a missing object reads as)."""
    return value if isinstance(value, dict) else {}


def _refuse(message: str, param: str, code: str = "unsupported_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def input_items(value: Any, known: Mapping[str, dict] | None = None) -> list[dict]:
    """`input` as a list of items, checked, each with its type and an id. `known`: the
    conversation's items by id, for `item_reference`s."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"id": new_id("msg"), "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise InvalidRequest("input must be a string or a list of items.", param="input",
                             code="invalid_type")
    return [_item(item, f"input[{i}]", known or {}) for i, item in enumerate(value)]


def _item(item: Any, where: str, known: Mapping[str, dict]) -> dict:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object.", param=where, code="invalid_type")
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"  # the short form: {"role": ..., "content": ...}
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise InvalidRequest(f"{where}.{name} must be a string.",
                                     param=f"{where}.{name}", code="invalid_type")
        return _with_id(item, "function_call")
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise InvalidRequest(f"{where}.call_id must be a string.", param=f"{where}.call_id",
                                 code="invalid_type")
        _tool_output_text(item.get("output"), f"{where}.output")
        return _with_id(item, "function_call_output")
    if kind == "reasoning":
        return _with_id(item, "reasoning")
    if kind == "item_reference":
        ref = item.get("id")
        found = known.get(ref) if isinstance(ref, str) else None
        if found is None:
            raise _refuse(f"{where} refers to item '{clip(item.get('id'))}', which is not in "
                          "this conversation; send the item itself.", f"{where}.id")
        return found
    raise _refuse(f"Input items of type '{clip(kind)}' have no chat completions equivalent, "
                  "which this model's backend speaks.", f"{where}.type")


def _with_id(item: dict, kind: str) -> dict:
    if isinstance(item.get("id"), str) and item["id"]:
        return {**item, "type": kind}
    return {**item, "type": kind, "id": new_id(_ID_PREFIX[kind])}


def _message(item: dict, where: str) -> dict:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"{where}.role must be one of user, assistant, system, developer.",
                             param=f"{where}.role", code="invalid_value")
    content = item.get("content")
    text_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        part: dict = {"type": text_type, "text": content}
        if role == "assistant":
            part["annotations"] = []
        content = [part]
    elif isinstance(content, list):
        for j, part in enumerate(content):
            _content_part(part, f"{where}.content[{j}]")
    else:
        raise InvalidRequest(f"{where}.content must be a string or a list of parts.",
                             param=f"{where}.content", code="invalid_type")
    return _with_id({**item, "content": content}, "message")


def _content_part(part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{where}.text must be a string.", param=f"{where}.text",
                                 code="invalid_type")
    elif kind == "refusal":
        if not isinstance(part.get("refusal"), str):
            raise InvalidRequest(f"{where}.refusal must be a string.",
                                 param=f"{where}.refusal", code="invalid_type")
    elif kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise _refuse("Chat completions take images by URL (a data: URL for inline "
                          "bytes), not by file id: set image_url.", f"{where}.image_url")
    elif kind == "input_file":
        if part.get("file_url") is not None:
            raise _refuse("Chat completions take files by id or as file_data, not by URL.",
                          f"{where}.file_url")
        if not isinstance(part.get("file_id") or part.get("file_data"), str):
            raise InvalidRequest(f"{where} needs file_id or file_data.", param=where,
                                 code="invalid_value")
    else:
        raise _refuse(f"Content parts of type '{clip(kind)}' have no chat completions "
                      "equivalent.", f"{where}.type")


def _tool_output_text(output: Any, where: str) -> str:
    """A function call's output as the text a chat `tool` message carries."""
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequest(f"{where} must be a string or a list of parts.", param=where,
                             code="invalid_type")
    texts = []
    for j, part in enumerate(output):
        if not isinstance(part, dict) or part.get("type") != "input_text" \
                or not isinstance(part.get("text"), str):
            raise _refuse("A chat tool message carries text only.", f"{where}[{j}]")
        texts.append(part["text"])
    return "".join(texts)


# -- items -> chat messages ------------------------------------------------------------------

def chat_messages(items: list[dict]) -> list[dict]:
    """Checked items (input_items, or stored ones) as chat messages, in order."""
    messages: list[dict] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append(_chat_message(item))
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # text, then its calls: one turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _tool_output_text(item.get("output"), "output")})
        # reasoning: nothing a chat model can read
    return messages


def _chat_message(item: dict) -> dict:
    role = item["role"]
    parts = item["content"]
    if role == "assistant":
        text = "".join(p.get("text", "") for p in parts if p.get("type") != "refusal")
        refusal = "".join(p["refusal"] for p in parts if p.get("type") == "refusal")
        message: dict = {"role": "assistant", "content": text}
        if refusal:
            message["refusal"] = refusal
        return message
    chat_parts = [_chat_part(p) for p in parts]
    if len(chat_parts) == 1 and chat_parts[0]["type"] == "text":
        content: Any = chat_parts[0]["text"]  # a plain string: what every chat template takes
    else:
        content = chat_parts
    # Chat templates predate the developer role; OpenAI reads system the same way.
    return {"role": "system" if role == "developer" else role, "content": content}


def _chat_part(part: dict) -> dict:
    kind = part["type"]
    if kind == "input_image":
        image = {"url": part["image_url"]}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        return {"type": "file", "file": {k: part[k] for k in ("file_id", "file_data", "filename")
                                         if part.get(k) is not None}}
    if kind == "refusal":
        return {"type": "text", "text": part["refusal"]}
    return {"type": "text", "text": part["text"]}
