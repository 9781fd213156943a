"""Exact usage for every call, streams included: what each one produced, once it is over.

`ask_for_usage` makes streamed chat and completion calls ask their backend for the usage
chunk (`stream_options.include_usage`) even when the client did not; `meter` then watches the
answer on its way out. Blocks are forwarded as they are: the only event ever parsed in flight
is the usage-only chunk (``"choices": []`` plus a usage object), which is cut out of its block
when the client had not asked for it (clients such as chatbot-ui break on a chunk without
choices). When a stream ends without usage (the client left, the backend failed or timed out)
the tokens already produced still count: a local worker is asked what it had evaluated and
generated for that request id; for anything else (OpenAI) the prompt and the text streamed so
far are counted with tiktoken (`tokens.py`). `on_done` is called exactly once per call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import orjson

from llm_gateway.accounting import tokens
from llm_gateway.accounting.sources import UsageSource
from llm_gateway.accounting.usage import _CONTENT, usage_from_body, usage_from_events
from llm_gateway.call import Call, Result
from llm_gateway.usage import Usage

log = logging.getLogger(__name__)

_ASKS_FOR_USAGE = frozenset({"/chat/completions", "/completions"})
_USAGE = b'"usage"'
_NO_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_DONE = b"data: [DONE]"
_ERROR_EVENT = b'data: {"error"'
_TIMEOUT_CODE = b'"code":"upstream_timeout"'
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
    """The result the client gets; ``on_done`` gets its usage once it is over (see module doc).

    Counting a cut stream may need I/O (the worker) and CPU (tiktoken): it runs as a task kept
    in ``tasks`` (the owner awaits them at shutdown; default: a set of this module's).
    """
    if result.stream is None:
        usage = usage_from_body(result.body) if result.status < 400 else None
        outcome = "ok" if result.status < 400 else "upstream_error"
        _deliver(on_done, Metered(usage, False, None, clock(), result.status, outcome))
        return result
    watch = _StreamMeter(call, result, backends, on_done,
                         _PENDING if tasks is None else tasks, clock)
    result.stream = watch.relay(result.stream)
    inner_close = result.close

    async def close() -> None:  # the stream may never have been read (client gone first)
        watch.finish("client_gone")
        if inner_close is not None:
            await inner_close()

    result.close = close
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


class _StreamMeter:
    __slots__ = ("_backends", "_call", "_clock", "_done", "_on_done", "_tasks", "first_at",
                 "kept", "kept_bytes", "last", "overflow_events", "result", "usage",
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
        self.result = result
        self.first_at: float | None = None
        self.usage: Usage | None = None  # from the usage-only chunk
        self.usage_block: bytes | None = None  # the last other block naming usage (Responses)
        self.last = b""
        self.kept: list[bytes] = []  # what was streamed, to count if usage never comes
        self.kept_bytes = 0
        self.overflow_events = 0

    async def relay(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        outcome = "error"
        try:
            async for block in blocks:
                if self.first_at is None and _CONTENT.search(block):
                    self.first_at = self._clock()
                if _USAGE in block:
                    block = self._take_usage(block)
                    if not block:
                        continue
                self.last = block
                if self.kept_bytes < KEEP_BYTES:
                    self.kept.append(block)
                    self.kept_bytes += len(block)
                else:
                    self.overflow_events += block.count(b"data:")
                if self.usage is not None and _DONE in block:
                    # Reported before the block that ends the answer goes out: a client that
                    # got the whole answer has its record spooled, even if we die right after.
                    self.finish("ok")
                yield block
            outcome = self._ending()
        except (GeneratorExit, asyncio.CancelledError):
            # A client that hangs up right after [DONE] (the SDKs do) got everything.
            outcome = "ok" if self._complete() else "client_gone"
            raise
        finally:
            try:
                await blocks.aclose()  # type: ignore[attr-defined]
            finally:
                self.finish(outcome)

    def _take_usage(self, block: bytes) -> bytes:
        """Read the usage-only chunk, cutting it out unless the client asked for it."""
        found = _NO_CHOICES.search(block)
        if found is None:
            self.usage_block = block  # e.g. the Responses API's response.completed event
            return block
        while found is not None:  # (Azure's first chunk has no choices, and no usage)
            start = block.rfind(b"\n", 0, found.start()) + 1
            end = block.find(b"\n", found.end())
            end = len(block) if end < 0 else end
            usage = _usage_only(block[start:end])
            if usage is not None:
                self.usage = usage
                if self._call.wants_usage:
                    return block
                # The event is that one data line plus the blank line ending it (LF or CRLF).
                while end < len(block) and block[end] in b"\r\n":
                    end += 1
                return block[:start] + block[end:]
            found = _NO_CHOICES.search(block, end)
        return block

    def _ending(self) -> str:
        last = self.last
        at = last.rfind(b"\ndata: ") + 1
        if last.startswith(_ERROR_EVENT, at):
            return "timeout" if _TIMEOUT_CODE in last[at:] else "upstream_error"
        return "ok" if self._complete() else "upstream_error"  # stopped, without [DONE]

    def _complete(self) -> bool:
        return _DONE in self.last or self._reported() is not None

    def _reported(self) -> Usage | None:
        if self.usage is None and self.usage_block is not None:
            self.usage = usage_from_events(self.usage_block)
            self.usage_block = None
        return self.usage

    def finish(self, outcome: str) -> None:
        """Once, when the stream is over: report its usage, counting it if it never came."""
        if self._done:
            return
        self._done = True
        ended = self._clock()
        status = self.result.status
        usage = self._reported()
        # A stream that ended well without usage (a backend ignoring include_usage) is
        # counted too, but it is whole: partial means cut short.
        partial = usage is None and outcome != "ok"
        if usage is not None:
            _deliver(self._on_done, Metered(usage, False, self.first_at, ended, status, outcome))
            return
        work = self._count(partial, ended, status, outcome)
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop any more (shutdown): an estimate rather than nothing
            work.close()
            usage = _count_tokens(self._call, self.kept, self.overflow_events, estimate=True)
            _deliver(self._on_done, Metered(usage, partial, self.first_at, ended, status,
                                            outcome))
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count(self, partial: bool, ended: float, status: int, outcome: str) -> None:
        usage: Usage | None = None
        try:
            usage = await _backend_usage(self._backends.get(self.result.backend),
                                         self._call.request_id)
            if usage is None:
                usage = await asyncio.to_thread(_count_tokens, self._call, self.kept,
                                                self.overflow_events)
        except Exception:
            log.exception("counting the usage of cut stream %s failed", self._call.request_id)
        finally:
            self.kept = []
            _deliver(self._on_done, Metered(usage, partial, self.first_at, ended, status,
                                            outcome))


def _usage_only(line: bytes) -> Usage | None:
    """The usage of a `data:` line holding a chunk with no choices, else None."""
    if not line.startswith(b"data:"):
        return None
    try:
        event = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("choices") != []:
        return None
    return Usage.from_object(event.get("usage"))


async def _backend_usage(backend: UsageSource | None, request_id: str) -> Usage | None:
    if backend is None:
        return None
    try:
        return await backend.usage_of(request_id)
    except Exception:
        log.warning("backend could not say what request %s used", request_id, exc_info=True)
        return None


def _count_tokens(call: Call, blocks: list[bytes], overflow_events: int, *,
                  estimate: bool = False) -> Usage:
    """Prompt and streamed output counted with the model's tiktoken encoding (blocking);
    with ``estimate``, 4 characters a token (when there is no time to load an encoding)."""
    enc = None if estimate else tokens.encoding(call.target_model or call.model)
    prompt = tokens.prompt_tokens(call.endpoint, call.body, enc)
    completion = tokens.count_text(tokens.streamed_text(blocks), enc) + overflow_events
    return Usage(prompt, completion, 0, prompt + completion)
