"""The Responses API of the fake OpenAI upstream: the response resource and its event sequence.

Pure functions, no I/O; the text and token rules are in :mod:`llm_gateway.testing.fake_answer`.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.testing.fake_answer import (
    Answer,
    _answer,
    _last_user_text,
    _limit,
    _message_tokens,
)
from llm_gateway.testing.fake_wire import BadRequest, sse_named

# --- Responses API ----------------------------------------------------------------------------


def _response_messages(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        messages: list[Any] = [{"role": "user", "content": value}]
    elif isinstance(value, list):
        # Items without a role (tool outputs, reasoning) carry no prompt words here.
        messages = [item for item in value if isinstance(item, dict) and "role" in item]
    else:
        raise BadRequest("Missing required parameter: 'input'.", "input")
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages = [{"role": "developer", "content": instructions}, *messages]
    return messages


def response_answer(body: dict[str, Any]) -> Answer:
    messages = _response_messages(body)
    limit = _limit(body, "max_output_tokens")
    return _answer("resp_", body, _last_user_text(messages), _message_tokens(messages), limit)


def response_object(a: Answer, body: dict[str, Any], *, done: bool = True) -> dict[str, Any]:
    """The ``response`` resource; ``done=False`` gives its in-progress form (no output yet)."""
    complete = a.finish_reason == "stop"
    status = ("completed" if complete else "incomplete") if done else "in_progress"
    output = (
        [
            {
                "type": "message",
                "id": "msg_" + a.id.removeprefix("resp_"),
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": a.text, "annotations": []}],
            }
        ]
        if done
        else []
    )
    usage = (
        {
            "input_tokens": a.prompt_tokens,
            "output_tokens": len(a.words),
            "total_tokens": a.prompt_tokens + len(a.words),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        if done
        else None
    )
    return {
        "id": a.id,
        "object": "response",
        "created_at": a.created,
        "status": status,
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if done and not complete else None),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": a.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "metadata": body.get("metadata") or {},
    }


def response_stream(
    a: Answer,
    final: dict[str, Any],
    body: dict[str, Any],
) -> tuple[list[bytes], int]:
    """Named SSE events of a streamed response, and how many come before the text is done."""
    item = final["output"][0]
    item_id = item["id"]
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_object(a, body, done=False)},
        {"type": "response.in_progress", "response": response_object(a, body, done=False)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where,
         "part": {"type": "output_text", "text": "", "annotations": []}},
    ]
    for piece in a.pieces():
        events.append({"type": "response.output_text.delta", **where, "delta": piece,
                       "logprobs": []})
    before_done = len(events)
    events += [
        {"type": "response.output_text.done", **where, "text": a.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": item["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    ]
    terminal = "response.completed" if final["status"] == "completed" else "response.incomplete"
    events.append({"type": terminal, "response": final})
    for seq, event in enumerate(events):
        event["sequence_number"] = seq
    return [sse_named(e) for e in events], before_done


def response_deleted(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response.deleted", "deleted": True}
