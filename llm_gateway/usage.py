"""`Usage`: the token counts of one answer, a value every layer reads (backends report it,
accounting prices it, limits settle with it, metrics and the log line show it); here at the
bottom so that each imports it downward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a setattr call per field
class Usage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0  # prompt tokens served from the backend's prompt cache
    total: int = 0

    @classmethod
    def from_object(cls, obj: Any) -> Usage | None:
        """Read an OpenAI ``usage`` object; None when it holds no token counts."""
        if type(obj) is not dict:  # what JSON decodes to (an ABC check costs 10x more)
            return None
        get = obj.get
        prompt = get("prompt_tokens")
        if prompt is None:
            prompt = get("input_tokens")
        completion = get("completion_tokens")
        if completion is None:
            completion = get("output_tokens")
        total = get("total_tokens")
        # `type(x) is int`: a bool is not a count.
        if type(prompt) is not int and type(completion) is not int and type(total) is not int:
            return None
        prompt = prompt if type(prompt) is int and prompt > 0 else 0
        completion = completion if type(completion) is int and completion > 0 else 0
        details = get("prompt_tokens_details") or get("input_tokens_details")
        cached = details.get("cached_tokens") if type(details) is dict else None
        return cls(prompt, completion, cached if type(cached) is int and cached > 0 else 0,
                   total if type(total) is int and total > 0 else prompt + completion)
