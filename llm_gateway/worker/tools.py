"""Tool calls through llama-cpp-python's function-calling chat handler (chatml-function-calling).

The handler runs whole on the engine thread (it may generate more than once to decide
between a message and a call), so a streamed request gets its answer in a few chunks at the
end rather than token by token.
"""

from __future__ import annotations

from llm_gateway.worker.engines.base import Finished
from llm_gateway.worker.shapes import ChatShaper


def _finished(result: dict, finish_reason: str) -> Finished:
    counts = result.get("usage") or {}
    return Finished(finish_reason, int(counts.get("prompt_tokens", 0)),
                    int(counts.get("completion_tokens", 0)), 0)


def _message(result: dict) -> tuple[dict, str]:
    choice = (result.get("choices") or [{}])[0]
    message = dict(choice.get("message") or {})
    message.pop("function_call", None)  # the legacy field; tool_calls carries the same
    message.setdefault("content", None)
    message["role"] = "assistant"
    message["refusal"] = None
    reason = "tool_calls" if message.get("tool_calls") else choice.get("finish_reason") or "stop"
    return message, reason


def tool_response(result: dict, shaper: ChatShaper) -> dict:
    message, reason = _message(result)
    whole = shaper.whole(message.get("content") or "", _finished(result, reason), None)
    whole["choices"][0]["message"] = message
    return whole


def tool_chunks(result: dict, shaper: ChatShaper) -> list[dict]:
    message, reason = _message(result)
    chunks = shaper.head()
    if message.get("content"):
        chunks.append(shaper.delta(message["content"], None))
    calls = message.get("tool_calls") or []
    if calls:
        chunk = shaper.delta("", None)
        chunk["choices"][0]["delta"] = {"tool_calls": [
            {"index": i, "id": call.get("id"), "type": "function",
             "function": dict(call.get("function") or {})}
            for i, call in enumerate(calls)]}
        chunks.append(chunk)
    chunks.append(shaper.end(reason))
    if shaper.include_usage:
        chunks.append(shaper.usage_chunk(_finished(result, reason)))
    return chunks
