"""What a request span says, in OpenTelemetry's GenAI semantic conventions (gen_ai.*) and the
gateway's own attributes (llm_gateway.*). Never a key: the key's id only. Prompts only when
`tracing.record_content` is true (answer.py records completions)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from llm_gateway.call import Call, Result
from llm_gateway.tracing.base import Attributes, AttrValue, Span
from llm_gateway.usage import Usage

# OpenAI operationId -> gen_ai.operation.name
OPERATIONS = {
    "createChatCompletion": "chat",
    "createCompletion": "text_completion",
    "createEmbedding": "embeddings",
    "createResponse": "chat",
}
# Request fields -> their gen_ai.request.* attribute, when they hold a number.
_NUMBERS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}
CONTENT_LIMIT = 64 * 1024  # characters of a prompt or completion kept in one span event


def operation_name(call: Call) -> str:
    return OPERATIONS.get(call.operation, call.operation)


def call_attributes(call: Call) -> dict[str, AttrValue]:
    """The request's gen_ai.request.* and the gateway's caller attributes."""
    out: dict[str, AttrValue] = {
        "gen_ai.operation.name": operation_name(call),
        "gen_ai.request.model": call.model,
        "llm_gateway.stream": call.stream,
    }
    body = call.body
    for field, value in body.items():  # (a body holds a few fields: fewer lookups this way)
        name = _NUMBERS.get(field)
        # A number, not a bool; max_completion_tokens wins over max_tokens, in either order.
        if name is not None and (type(value) is int or type(value) is float) \
                and (field != "max_tokens" or name not in out):
            out[name] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = tuple(stop)
    principal = call.principal
    if principal is not None:
        out["llm_gateway.key_id"] = principal.key_id
        if principal.team is not None:
            out["llm_gateway.team"] = principal.team
    return out


def record_prompt(span: Span, call: Call) -> None:
    """The prompt as an event (tracing.record_content: true only)."""
    for field in ("messages", "prompt", "input"):
        if field in call.body:
            text = orjson.dumps(call.body[field]).decode()[:CONTENT_LIMIT]
            span.event("gen_ai.content.prompt", {"gen_ai.prompt": text})
            return


def result_attributes(result: Result) -> dict[str, AttrValue]:
    """Where the answer came from: routing's and grouping's choices."""
    out: dict[str, AttrValue] = {}
    if result.backend:
        out["llm_gateway.backend"] = result.backend
    if result.deployment is not None:
        out["llm_gateway.deployment"] = result.deployment
    out["llm_gateway.attempts"] = result.attempts
    if result.grouping is not None:
        out["llm_gateway.grouping"] = result.grouping
        out["llm_gateway.cache"] = "hit" if result.grouping == "hit" else "miss"
    if result.fallback is not None:
        out["llm_gateway.fallback.reason"], out["llm_gateway.fallback.model"] = result.fallback
    return out


def usage_attributes(usage: Usage) -> Attributes:
    return {"gen_ai.usage.input_tokens": usage.prompt,
            "gen_ai.usage.output_tokens": usage.completion,
            "gen_ai.usage.cached_tokens": usage.cached}


def wall_ns(perf: float) -> int:
    """A perf_counter() reading as time.time_ns(), for a span event in the past."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)


def response_fields(data: Any) -> dict[str, AttrValue]:
    """gen_ai.response.* from a decoded answer (a whole body, or a stream's first chunk)."""
    out: dict[str, AttrValue] = {}
    if type(data) is not dict:
        return out
    response = data.get("response")
    inner: dict = response if type(response) is dict else data
    if isinstance(inner.get("model"), str):
        out["gen_ai.response.model"] = inner["model"]
    if isinstance(inner.get("id"), str):
        out["gen_ai.response.id"] = inner["id"]
    return out
