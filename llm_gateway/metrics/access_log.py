"""The one line per request on logger `llm_gateway.access` (formatted by app/logs.py).

The request line says who asked for what and how it went (request id, team, model, backend,
status, tokens, latency; the deployment, attempts and fallback when routing had any).
Headers are never logged, so neither `Authorization` nor any key header can leak; prompts and
completions only appear with `server.log_bodies: true` *and* `server.log_level: debug`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from llm_gateway.call import Call
from llm_gateway.echo import clip
from llm_gateway.usage import Usage


class Logged(Protocol):
    """What a request's line is made of (recorder.RequestRecord)."""

    request_id: str
    method: str
    path: str
    status: int
    backend: str | None
    call: Call | None
    started: float
    first_token_at: float | None
    body: list[bytes] | None
    deployment: str | None
    attempts: int
    fallback: tuple[str, str] | None
    trace: Callable[[], tuple[str, str] | None] | None  # the request span's ids, when traced

    def overhead(self) -> float | None: ...

ACCESS = logging.getLogger("llm_gateway.access")


class AccessLog:
    """Writes the request line; whether it is written at all is the logger's level (INFO)."""

    __slots__ = ("_bodies",)

    def __init__(self, bodies: bool) -> None:
        self._bodies = bodies

    @staticmethod
    def enabled() -> bool:
        return ACCESS.isEnabledFor(logging.INFO)

    def with_bodies(self) -> bool:
        return self._bodies and ACCESS.isEnabledFor(logging.DEBUG)

    def write(self, r: Logged, team: str, end: float, usage: Usage | None) -> None:
        call = r.call
        path = clip(r.path)  # client-chosen, like the model name: bounded (llm_gateway.echo)
        fields: dict[str, Any] = {
            "request_id": r.request_id,
            "method": r.method,
            "path": path,
            "status": r.status,
            "model": clip(call.model) if call is not None else None,
            "backend": r.backend,
            "team": team,
            "stream": call.stream if call is not None else None,
            "prompt_tokens": usage.prompt if usage else None,
            "completion_tokens": usage.completion if usage else None,
            "cached_tokens": usage.cached if usage else None,
            "duration_ms": round((end - r.started) * 1000, 3),
        }
        if r.first_token_at is not None:
            fields["ttft_ms"] = round((r.first_token_at - r.started) * 1000, 3)
        # Routing's, only when it did something: a route's deployment, a retry (or a grouped
        # answer's 0: no backend call of its own), a fallback model and why.
        if r.deployment is not None:
            fields["deployment"] = r.deployment
        if r.attempts != 1:
            fields["attempts"] = r.attempts
        if r.fallback is not None:
            fields["fallback_reason"], fields["fallback_model"] = r.fallback
        ids = r.trace() if r.trace is not None else None
        if ids is not None:  # the request's span, to find its trace from the line
            fields["trace_id"], fields["span_id"] = ids
        overhead = r.overhead()
        if overhead is not None:
            fields["overhead_ms"] = round(overhead * 1000, 3)
        if call is not None and self.with_bodies():
            fields["request_body"] = call.raw.decode(errors="replace")
            if r.body is not None:
                fields["response_body"] = b"".join(r.body).decode(errors="replace")
        ACCESS.info("%s %s %s", r.method, path, r.status, extra={"fields": fields})
