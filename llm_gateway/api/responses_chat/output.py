"""Response objects for a translated call, and a whole chat completion as one.

`Shape` is what every response object of one call echoes of its request (OpenAI's `Response`
schema: id, model, instructions, tools, sampling, store, metadata...); `Shape.response` fills
in the status, the output items and the usage. The item builders here are shared with the
stream translator (stream.py), so a streamed answer ends with the same object a whole one is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.api.responses_chat.items import as_dict, new_id

# A chat finish_reason -> the response's status and, when incomplete, why.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(slots=True)
class Shape:
    request: dict[str, Any]  # the Responses request body
    store: bool
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(self, status: str, output: list[dict], usage: dict | None = None, *,
                 incomplete: str | None = None, error: dict | None = None) -> dict[str, Any]:
        body = self.request
        reasoning = as_dict(body.get("reasoning"))
        answer: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body.get("model"),
            "output": output,
            "parallel_tool_calls": _default(body.get("parallel_tool_calls"), True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": None},
            "service_tier": body.get("service_tier") or "default",
            "store": self.store,
            "temperature": _default(body.get("temperature"), 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": _default(body.get("tool_choice"), "auto"),
            "tools": body.get("tools") or [],
            "top_logprobs": _default(body.get("top_logprobs"), 0),
            "top_p": _default(body.get("top_p"), 1.0),
            "truncation": body.get("truncation") or "disabled",
            "usage": usage,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }
        for name in ("safety_identifier", "prompt_cache_key"):
            if body.get(name) is not None:
                answer[name] = body[name]
        return answer


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def status_of(finish_reason: Any) -> tuple[str, str | None]:
    """(the response's status, why it is incomplete) for a chat finish_reason."""
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", reason) if reason else ("completed", None)


def usage_of(chat_usage: Any) -> dict | None:
    """A chat usage object in the Responses API's shape; None without counts."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = chat_usage.get("prompt_tokens")
    completion = chat_usage.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    total = chat_usage.get("total_tokens")
    details = chat_usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    out_details = chat_usage.get("completion_tokens_details")
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


# -- output items -----------------------------------------------------------------------------

def message_item(item_id: str, status: str, parts: list[dict]) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": parts}


def text_part(text: str = "", logprobs: list | None = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def refusal_part(refusal: str = "") -> dict:
    return {"type": "refusal", "refusal": refusal}


def call_item(item_id: str, status: str, call_id: str, name: str, arguments: str) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def from_chat_completion(shape: Shape, chat: Any) -> dict[str, Any]:
    """A whole chat completion (its first choice) as the response object. Raises ValueError
    when it is not one."""
    choices = chat.get("choices") if isinstance(chat, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ValueError("no message")
    status, incomplete = status_of(choice.get("finish_reason"))
    logprobs = choice.get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    parts = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(text_part(message["content"], tokens if isinstance(tokens, list) else []))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append(refusal_part(message["refusal"]))
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    output = []
    if parts or not calls:  # nothing at all is still an (empty) message, as OpenAI answers
        output.append(message_item(new_id("msg"), status, parts or [text_part()]))
    for call in calls:
        function = as_dict(call.get("function"))
        output.append(call_item(new_id("fc"), "completed", call.get("id") or new_id("call"),
                                function.get("name") or "", function.get("arguments") or ""))
    return shape.response(status, output, usage_of(chat.get("usage")), incomplete=incomplete)
