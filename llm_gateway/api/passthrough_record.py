"""The passthrough's accounting: one ledger record per call, its admission settled once.

A small JSON answer (at most `SMALL` bytes: an image list, a transcription, a batch, a file
object) is read whole before it is sent, so that what it reports (usage, images, the created
object's id) is known, and the object's owner remembered, before the client can use it.
Anything else (a download, audio, a stream) is relayed as it comes: its bytes are counted on
the way and, for an event stream, the last `TAIL` bytes are kept to read its usage at the end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any

from llm_gateway.accounting import passthrough_units as units_of
from llm_gateway.accounting.accountant import Accountant
from llm_gateway.accounting.metering import Metered
from llm_gateway.accounting.passthrough_units import Units
from llm_gateway.accounting.record import UsageRecord
from llm_gateway.admission import Admission
from llm_gateway.api.passthrough_body import Body
from llm_gateway.call import Call, Result
from llm_gateway.errors import GatewayError
from llm_gateway.stream.events import Block
from llm_gateway.stream.observer import End, Observer, Stage

SMALL = 64 * 1024
TAIL = 64 * 1024
ENDPOINT_LIMIT = 256  # characters of a path kept in a record


def _header(result: Result, name: str) -> str | None:
    for key, value in result.headers:
        if key == name:
            return value
    return None


class PassthroughRecord:
    """Watches one passthrough call from its admission to the end of its answer."""

    def __init__(self, accountant: Accountant, call: Call, admission: Admission, body: Body,
                 family: str, method: str, started: float,
                 also: Callable[[Metered], None] | None = None) -> None:
        self.accountant = accountant
        self.call = call
        self.admission = admission
        self.body = body
        self.family = family
        self.method = method
        self.started = started
        self.units: Units = units_of.from_request(call.endpoint, body.json)
        self.response_bytes = 0
        self.also = also  # the request's metrics record: the same usage, once over
        self._done = False

    def failed(self, error: GatewayError) -> None:
        """No answer came (the upstream was unreachable, timed out...)."""
        outcome = ("timeout" if error.status == 504 else
                   "upstream_error" if error.status in (502, 503) else "error")
        self.finish(error.status, outcome, "")

    def gone(self) -> None:
        """The call ended before any answer for another reason (cancelled)."""
        self.finish(499, "client_gone", "")

    async def watch(self, result: Result,
                    created: Callable[[dict[str, Any]], Awaitable[None]]) -> Result:
        """The result the client gets. `created(answer)` is awaited with a small successful
        JSON answer before it is sent (where the owner of a new object is remembered)."""
        media = (result.media_type or "").split(";", 1)[0].strip().lower()
        encoding = _header(result, "content-encoding")
        if result.stream is not None and media == "application/json":
            whole = await self._read_small(result)
            if whole is not None:
                self.response_bytes = len(whole)
                answer = units_of.from_answer(self.units, self.family, whole, encoding)
                if answer is not None and result.status < 300:
                    await created(answer)
                self.finish(result.status, "ok" if result.status < 400 else "upstream_error",
                             result.backend)
                return result
        if result.stream is None:  # a whole body already (an error made by a backend)
            self.response_bytes = len(result.body)
            units_of.from_answer(self.units, self.family, result.body, encoding)
            self.finish(result.status, "ok" if result.status < 400 else "upstream_error",
                         result.backend)
            return result
        result.observe(_Counted(self, result, media == "text/event-stream", encoding))
        return result

    async def _read_small(self, result: Result) -> bytes | None:
        """The whole answer when it is at most SMALL bytes (then `result` holds it as its body);
        None when it is larger (then `result` streams what was read, then the rest)."""
        length = _header(result, "content-length")
        if length is not None and (not length.isdigit() or int(length) > SMALL):
            return None
        stream = result.stream
        assert stream is not None
        parts: list[bytes] = []
        size = 0
        async for chunk in stream:
            parts.append(chunk)
            size += len(chunk)
            if size > SMALL:
                result.stream = _chain(parts, stream)
                return None
        whole = b"".join(parts)
        result.stream = None
        result.body = whole
        result.close = None  # the upstream response is over, and released
        # The body goes out whole: the gateway states its length itself.
        result.headers = [(k, v) for k, v in result.headers if k != "content-length"]
        return whole

    def finish(self, status: int, outcome: str, backend: str) -> None:
        """Once: the ledger's record, and the same usage to the metrics and log line."""
        if self._done:
            return
        self._done = True
        call, units = self.call, self.units
        usage = units.usage
        served = call.target_model or call.model
        accountant = self.accountant
        cost = accountant.prices.cost(usage, served, call.model) if usage else 0.0
        principal = call.principal
        now = perf_counter()
        if self.also is not None:
            self.also(Metered(usage, False, None, now, status, outcome))
        accountant.keep(UsageRecord(
            request_id=call.request_id, time=time.time() - (now - self.started),
            key_id=getattr(principal, "key_id", None), team=getattr(principal, "team", None),
            model=call.model, served_model=served, backend=backend,
            prompt_tokens=usage.prompt if usage else 0,
            completion_tokens=usage.completion if usage else 0,
            cached_tokens=usage.cached if usage else 0, cost=cost,
            latency_ms=(now - self.started) * 1000, status=status, outcome=outcome,
            endpoint=call.endpoint[:ENDPOINT_LIMIT], method=self.method,
            request_bytes=self.body.size, response_bytes=self.response_bytes,
            units=units.count, unit=units.unit, object_id=units.object_id,
        ), self.admission)


class _Counted(Observer):
    """A relayed answer's bytes counted as they go; an event stream's tail kept for its
    usage; the record made once it is over."""

    stage = Stage.METER
    __slots__ = ("encoding", "record", "result", "tail")

    def __init__(self, record: PassthroughRecord, result: Result, keep_tail: bool,
                 encoding: str | None) -> None:
        self.record = record
        self.result = result
        self.tail = bytearray() if keep_tail else None
        self.encoding = encoding

    def block(self, block: Block) -> None:
        raw = block.raw
        self.record.response_bytes += len(raw)
        tail = self.tail
        if tail is not None:
            tail += raw
            if len(tail) > 2 * TAIL:
                del tail[:-TAIL]

    def ended(self, end: End) -> None:
        record, status = self.record, self.result.status
        if self.tail is not None:
            units_of.from_stream_tail(record.units, bytes(self.tail[-TAIL:]), self.encoding)
        # A relayed answer that simply ended is whole, whatever its events say.
        outcome = end.outcome if end.outcome in ("client_gone", "error") else (
            "ok" if status < 400 else "upstream_error")
        record.finish(status, outcome, self.result.backend)


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        for chunk in head:
            yield chunk
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
