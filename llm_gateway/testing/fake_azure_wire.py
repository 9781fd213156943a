"""Azure OpenAI's own shapes, for the fake Azure resource: error bodies and content filtering.

Pure functions, no I/O. Azure answers in OpenAI's shapes plus its content-filter results:
`prompt_filter_results` on an answer (and on a stream's first chunk, which has no choices),
`content_filter_results` on each choice. Its errors are `{"error": {"code", "message"}}`,
with `innererror` when the content filter refused a prompt.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.testing.fake_wire import SSE_DONE, sse

# A prompt holding this is refused as Azure refuses a filtered prompt.
FILTER_TRIGGER = "AZURE_FILTER_ME"

_SAFE = {"filtered": False, "severity": "safe"}
SAFE_RESULTS: dict[str, Any] = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE,
                                "violence": _SAFE}
PROMPT_FILTER_RESULTS: list[dict[str, Any]] = [
    {"prompt_index": 0, "content_filter_results": {
        **SAFE_RESULTS, "jailbreak": {"filtered": False, "detected": False}}},
]

NOT_FOUND = "Resource not found"
DEPLOYMENT_NOT_FOUND = ("The API deployment for this resource does not exist. If you created "
                        "the deployment within the last 5 minutes, please wait a moment and "
                        "try again.")
ACCESS_DENIED = ("Access denied due to invalid subscription key or wrong API endpoint. Make "
                 "sure to provide a valid key for an active subscription and use a correct "
                 "regional API endpoint for your resource.")


def azure_error(code: str, message: str, **more: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, **more}})


def throttled(retry_after: str | None) -> str:
    """Azure's message for a 429."""
    return ("Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
            "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
            f"after {retry_after or '1'} seconds.")


def content_filter_error() -> bytes:
    """Azure's 400 for a prompt its content filter refused."""
    results = {**SAFE_RESULTS, "violence": {"filtered": True, "severity": "medium"},
               "jailbreak": {"filtered": False, "detected": False}}
    return orjson.dumps({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy. Please modify your prompt and retry.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation",
                       "content_filter_result": results},
    }})


def filtered_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """A chat or completion answer with Azure's filter results."""
    for choice in answer.get("choices", ()):
        choice["content_filter_results"] = SAFE_RESULTS
    return {**answer, "prompt_filter_results": PROMPT_FILTER_RESULTS}


def filtered_stream(built: tuple[list[bytes], int]) -> tuple[list[bytes], int]:
    """A stream's events as Azure sends them: a first chunk with no choices and the prompt's
    filter results, and filter results on every choice (empty where nothing was generated)."""
    events, before_finish = built
    first = sse({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": PROMPT_FILTER_RESULTS})
    return [first, *(_filtered_event(e) for e in events)], before_finish + 1


def _filtered_event(event: bytes) -> bytes:
    if event == SSE_DONE:
        return event
    chunk = orjson.loads(event.removeprefix(b"data: "))
    for choice in chunk.get("choices", ()):
        delta = choice.get("delta")
        said = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        choice["content_filter_results"] = SAFE_RESULTS if said else {}
    return sse(chunk)
