"""Exact usage for every call, streams included: what each one produced, once it is over.

`ask_for_usage` makes streamed chat and completion calls ask their backend for the usage
chunk (`stream_options.include_usage`) even when the client did not; `meter` then observes
the answer as the relay moves it (stream/relay.py). Blocks go on as they are, but for the
usage-only chunk (``"choices": []`` plus a usage object), which is cut out when the client had
not asked for it (clients such as chatbot-ui break on a chunk without choices). What it
measures is what the ledger, the metrics and the request log line all count. When a stream
ends without usage (the client left, the backend failed or timed out) the tokens already
produced still count: a local worker is asked what it had evaluated and generated for that
request id; for anything else (OpenAI) the prompt and the text streamed so far are counted
with tiktoken (`tokens.py`). `on_done` is called exactly once per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from llm_gateway.accounting import tokens
from llm_gateway.accounting.sources import UsageSource
from llm_gateway.accounting.usage import usage_from_body
from llm_gateway.call import Call, Result
from llm_gateway.stream.events import CONTENT as _CONTENT
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.usage import Usage

log = logging.getLogger(__name__)

_ASKS_FOR_USAGE = frozenset({"/chat/completions", "/completions"})
_USAGE = b'"usage"'
# Streamed text kept for counting a cut stream ourselves; past it each event counts one token,
# which is how OpenAI streams (one token a chunk).
KEEP_BYTES = 8 << 20


@dataclass(slots=True)
class Metered:
    usage: Usage | None
    partial: bool  # the stream ended early and its usage was counted, not reported
    first_token_at: float | None  # perf_counter of the first block bearing content
    ended_at: float  # perf_counter
    status: int
    outcome: str  # "ok" | "client_gone" | "upstream_error" | "timeout" | "error"
    stream_error: bool = False  # the stream ended with an error event


def ask_for_usage(call: Call) -> None:
    """Have a streamed chat/completions call ask for usage; note whether the client did."""
    if not call.stream or call.endpoint not in _ASKS_FOR_USAGE:
        return  # whole bodies carry usage; Responses API streams report it in their last event
    options = call.body.get("stream_options")
    call.wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if call.wants_usage:
        return
    call.body["stream_options"] = {**options, "include_usage": True} \
        if isinstance(options, dict) else {"include_usage": True}
    call.raw = orjson.dumps(call.body)  # payload() sends raw


def meter(
    call: Call,
    result: Result,
    backends: Mapping[str, UsageSource],
    on_done: Callable[[Metered], None],
    *,
    tasks: set[asyncio.Task] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Result:
    """Have ``result`` measured as it goes out: ``on_done`` gets its usage once it is over
    (see module doc). Returns ``result``.

    Counting a cut stream may need I/O (the worker) and CPU (tiktoken): it runs as a task kept
    in ``tasks`` (the owner awaits them at shutdown; default: a set of this module's).
    """
    result.observe(_Meter(call, result, backends, on_done,
                          _PENDING if tasks is None else tasks, clock))
    return result


_PENDING: set[asyncio.Task] = set()


async def drain(tasks: set[asyncio.Task] | None = None, timeout: float = 10.0) -> None:
    """Wait (bounded) for the counting of cut streams still under way, e.g. at shutdown."""
    pending = set(_PENDING if tasks is None else tasks)
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _deliver(on_done: Callable[[Metered], None], metered: Metered) -> None:
    try:
        on_done(metered)
    except Exception:  # recording must never break the answer
        log.exception("recording a call's usage failed")


class _Meter(Observer):
    """What one answer produced: its usage (reported, or counted when it never came), when
    its first content went by, and how it ended."""

    stage = Stage.METER
    __slots__ = ("_backends", "_call", "_clock", "_done", "_on_done", "_tasks", "_whole",
                 "first_at", "kept", "kept_bytes", "overflow_events", "result", "usage",
                 "usage_block")

    def __init__(self, call: Call, result: Result, backends: Mapping[str, UsageSource],
                 on_done: Callable[[Metered], None], tasks: set[asyncio.Task],
                 clock: Callable[[], float]) -> None:
        self._call = call
        self._backends = backends
        self._on_done = on_done
        self._tasks = tasks
        self._clock = clock
        self._done = False
        self._whole = False  # a whole body was shown (its usage read from it)
        self.result = result
        self.first_at: float | None = None
        self.usage: Usage | None = None  # from the usage-only chunk
        # The last other block naming usage (a Responses API stream's final event; servers
        # that put `"usage": null` on every chunk): read once the stream is over.
        self.usage_block: Block | None = None
        self.kept: list[bytes] = []  # what was streamed, to count if usage never comes
        self.kept_bytes = 0
        self.overflow_events = 0

    def whole(self, status: int, body: bytes) -> None:
        # Reported at the end (next, in the same relay call), which says whether it went out.
        self.usage = usage_from_body(body) if status < 400 else None
        self._whole = True

    def block(self, block: Block) -> None:
        raw = block.raw
        if self.first_at is None and _CONTENT.search(raw):
            self.first_at = self._clock()
        if _USAGE in raw:
            for event in block.usage_only_events():
                self.usage = event.usage
                # The usage-only chunk goes to a client that asked for it; cut out otherwise
                # (clients such as chatbot-ui break on a chunk without choices).
                if not self._call.wants_usage:
                    block.drop(event)
            if self.usage is None:
                self.usage_block = block
        if self.kept_bytes < KEEP_BYTES:
            self.kept.append(raw)
            self.kept_bytes += len(raw)
        else:
            self.overflow_events += raw.count(b"data:")

    def ended(self, end: End) -> None:
        """Once, when the stream is over: report its usage, counting it if it never came."""
        if self._done:
            return
        self._done = True
        ended = self._clock()
        status = self.result.status
        if self._whole:  # its usage was in the body, or there is none to count (an error)
            outcome = end.outcome if end.outcome == "error" else (
                "ok" if status < 400 else "upstream_error")
            _deliver(self._on_done, Metered(self.usage, False, None, ended, status, outcome))
            return
        usage = self._reported()
        outcome = end.outcome
        # A stream that ended well without usage (a backend ignoring include_usage) is
        # counted too, but it is whole: partial means cut short.
        partial = usage is None and outcome != "ok"
        if usage is not None:
            _deliver(self._on_done, Metered(usage, False, self.first_at, ended, status, outcome,
                                            end.in_error))
            return
        work = self._count(partial, ended, status, outcome, end.in_error)
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop any more (shutdown): an estimate rather than nothing
            work.close()
            usage = _count_tokens(self._call, self.kept, self.overflow_events, estimate=True)
            _deliver(self._on_done, Metered(usage, partial, self.first_at, ended, status,
                                            outcome, end.in_error))
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reported(self) -> Usage | None:
        if self.usage is None and self.usage_block is not None:
            for event in reversed(self.usage_block.events):
                if event.usage is not None:
                    self.usage = event.usage
                    break
            self.usage_block = None
        return self.usage

    async def _count(self, partial: bool, ended: float, status: int, outcome: str,
                     in_error: bool) -> None:
        usage: Usage | None = None
        try:
            usage = await _backend_usage(self._backends.get(self.result.backend), self._call)
            if usage is None:
                usage = await asyncio.to_thread(_count_tokens, self._call, self.kept,
                                                self.overflow_events)
        except Exception:
            log.exception("counting the usage of cut stream %s failed", self._call.request_id)
        finally:
            self.kept = []
            _deliver(self._on_done, Metered(usage, partial, self.first_at, ended, status,
                                            outcome, in_error))


async def _backend_usage(backend: UsageSource | None, call: Call) -> Usage | None:
    if backend is None:
        return None
    try:
        return await backend.usage_of(call.call_id)
    except Exception:
        log.warning("backend could not say what request %s used", call.request_id,
                    exc_info=True)
        return None


def _count_tokens(call: Call, blocks: list[bytes], overflow_events: int, *,
                  estimate: bool = False) -> Usage:
    """Prompt and streamed output counted with the model's tiktoken encoding (blocking);
    with ``estimate``, 4 characters a token (when there is no time to load an encoding)."""
    enc = None if estimate else tokens.encoding(call.target_model or call.model)
    prompt = tokens.prompt_tokens(call.endpoint, call.body, enc)
    completion = tokens.count_text(tokens.streamed_text(blocks), enc) + overflow_events
    return Usage(prompt, completion, 0, prompt + completion)
