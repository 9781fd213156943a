"""The worker's spans for a traced request (docs/tracing.md): its queue wait, its prompt's
evaluation (tokens, cached tokens) and its decode, under one span that continues the
gateway's attempt span (the request's `traceparent`).

A job's stream is watched as it goes by; the spans are made once its `Finished` arrives,
with the times seen: submitted (here), began (`Job.began_ns`, set by the engine), the first
token, the end. Only requests with a `traceparent`, and only when `--otlp-endpoint` is given:
otherwise nothing here runs (and OpenTelemetry is never imported).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from llm_gateway.tracing.base import Span, Tracer
from llm_gateway.worker.engines.base import Event, EventStream, Finished, Job, Piece
from llm_gateway.worker.watched import Watching


def traced(tracer: Tracer, headers: Mapping[str, str], job: Job, model: str,
           stream: EventStream) -> EventStream:
    """``stream``, watched for its spans when tracing is on and the request is traced."""
    if not tracer.enabled or "traceparent" not in headers:
        return stream
    return _JobTrace(tracer, headers, job, model, stream)


class _JobTrace(Watching):
    def __init__(self, tracer: Tracer, headers: Mapping[str, str], job: Job, model: str,
                 inner: EventStream) -> None:
        super().__init__(inner)
        self._job = job
        self._submitted = time.time_ns()
        self._first = 0  # the first generated token, time.time_ns()
        self._done = False
        self._span = tracer.start(f"generate {model}", headers, {
            "gen_ai.operation.name": "generate", "gen_ai.request.model": model,
            "llm_worker.job_id": job.id}, kind="server", start_ns=self._submitted)

    def _see(self, event: Event) -> None:
        if isinstance(event, Piece):
            if not self._first and event.token_id is not None:
                self._first = time.time_ns()
        elif isinstance(event, Finished):
            self._finish(event)

    def _finish(self, finished: Finished | None) -> None:
        if self._done:
            return
        self._done = True
        now = time.time_ns()
        span = self._span
        began = self._job.began_ns or now
        first = self._first or now
        _timed(span, "llm_worker.queue_wait", self._submitted, began)
        prompt = span.child("llm_worker.prompt_eval", start_ns=began)
        decode = span.child("llm_worker.decode", start_ns=first)
        if finished is not None:
            prompt.set_all({"gen_ai.usage.input_tokens": finished.prompt_tokens,
                            "gen_ai.usage.cached_tokens": finished.cached_tokens})
            decode.set("gen_ai.usage.output_tokens", finished.completion_tokens)
            span.set_all({"gen_ai.usage.input_tokens": finished.prompt_tokens,
                          "gen_ai.usage.output_tokens": finished.completion_tokens,
                          "gen_ai.usage.cached_tokens": finished.cached_tokens,
                          "gen_ai.response.finish_reasons": [finished.finish_reason]})
        else:
            span.fail("cancelled", "the job ended before it finished")
        prompt.end(max(first, began))
        decode.end(now)
        span.end(now)

    def _stopped(self) -> None:
        self._finish(None)

    async def aclose(self) -> None:
        self._finish(None)
        await self._inner.aclose()


def _timed(parent: Span, name: str, start_ns: int, end_ns: int) -> None:
    parent.child(name, start_ns=start_ns).end(end_ns)
