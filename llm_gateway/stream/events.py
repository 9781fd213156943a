"""A block of server-sent events, parsed once for every layer that looks at it.

Backends hand the relay byte blocks that end on event boundaries (`backends/sse.py`). A block
is cut into its events when someone first asks; an event's JSON is decoded when someone first
needs a field of it, and kept: the ledger, the metrics, grouping and the id claims all read the
same decoded object. The questions every layer asks (does it carry content, is it the end, an
error, a usage report) are answered from the bytes first, so most events are never decoded.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm_gateway.usage import Usage

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
# A generated piece of output: chat and completion text, a Responses API delta, a refusal, or a
# tool call (the role-only first chunk of a chat stream has empty content and does not count).
CONTENT = re.compile(
    rb'"(?:content|text|delta|refusal|arguments)":\s*"(?!")|"tool_calls":\s*\[\s*\{'
)
_USAGE = b'"usage"'
_NO_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_COMPACT_NO_CHOICES = b'"choices":[]'
# Bytes without which a block cannot hold a stream's last event, or a usage-only chunk: most
# blocks are let through on one search, their events never cut out.
_MAY_END = re.compile(rb'\[DONE\]|"response\.(?:completed|incomplete)"')
# Responses API events that end a stream: well, or not (their `type` comes first).
_FINISHED = re.compile(rb'\{\s*"type"\s*:\s*"response\.(?:completed|incomplete)"')
_FAILED = re.compile(rb'\{\s*"type"\s*:\s*"(?:error|response\.failed)"')
_UNREAD: Any = object()
_NONE: list[Any] = []  # (shared, never appended to)


class Event:
    """One event of a block: where it lies, and its `data:` payload."""

    __slots__ = ("_data", "_usage", "data_bytes", "end", "start")

    def __init__(self, data_bytes: bytes, start: int, end: int) -> None:
        self.data_bytes = data_bytes  # the data lines' payload, joined
        self.start = start  # the event's bytes in its block, separator included
        self.end = end
        self._data: Any = _UNREAD
        self._usage: Any = _UNREAD

    @property
    def data(self) -> Any:
        """The payload decoded as JSON (once), or None when it is not JSON."""
        if self._data is _UNREAD:
            try:
                self._data = orjson.loads(self.data_bytes) if self.data_bytes else None
            except orjson.JSONDecodeError:
                self._data = None
        return self._data

    @property
    def is_done(self) -> bool:
        """The answer is complete: `[DONE]`, or a Responses API stream's last event."""
        payload = self.data_bytes
        return payload == b"[DONE]" or _FINISHED.match(payload) is not None

    @property
    def is_error(self) -> bool:
        """An error event: a backend (or the gateway) failed mid-stream."""
        payload = self.data_bytes
        return payload.startswith(b'{"error"') or _FAILED.match(payload) is not None

    @property
    def has_content(self) -> bool:
        return CONTENT.search(self.data_bytes) is not None

    @property
    def usage(self) -> Usage | None:
        """The token usage it reports (a chat usage chunk, a Responses API final event)."""
        if self._usage is _UNREAD:
            self._usage = None
            if _USAGE in self.data_bytes:
                data = self.data
                if type(data) is dict:
                    usage = Usage.from_object(data.get("usage"))
                    response = data.get("response")
                    if usage is None and type(response) is dict:
                        usage = Usage.from_object(response.get("usage"))
                    self._usage = usage
        return self._usage

    @property
    def usage_only(self) -> bool:
        """A chat/completions usage chunk: no choices, only usage (cut out unless asked for)."""
        return (_NO_CHOICES.search(self.data_bytes) is not None and self.usage is not None
                and type(self.data) is dict and self.data.get("choices") == [])

    def error_code(self) -> str | None:
        data = self.data
        error = data.get("error") if type(data) is dict else None
        if type(error) is dict and isinstance(error.get("code"), str):
            return error["code"]
        return None


class Block:
    """One block of whole events, as a backend sent it. `drop` cuts events out of what the
    client gets (a usage chunk the client did not ask for).

    A block often holds many events (a fast upstream's whole answer can come as one), so the
    questions asked of every block are answered from around the bytes that matter (the last
    event, a `"choices": []`), and `events` cuts the whole block only for who needs it all."""

    __slots__ = ("_dropped", "_ends", "_events", "_first", "_last", "_usage_only", "raw")

    def __init__(self, raw: bytes, sse: bool = True) -> None:
        self.raw = raw
        self._ends: bool | None = None if sse else False  # (not events: never the end)
        self._events: list[Event] | None = None
        self._dropped: list[Event] | None = None
        self._first: Any = _UNREAD
        self._last: Any = _UNREAD
        self._usage_only: list[Event] | None = None

    @property
    def events(self) -> list[Event]:
        if self._events is None:
            self._events = parse(self.raw)
        return self._events

    @property
    def first_event(self) -> Event | None:
        """Its first event, cut out alone (None when the first has no data: a comment)."""
        if self._first is _UNREAD:
            if self._events is not None:
                self._first = self._events[0] if self._events else None
            else:
                self._first = _event_at(self.raw, 0)
        return self._first

    @property
    def last_event(self) -> Event | None:
        """Its last event, cut out alone."""
        if self._last is _UNREAD:
            if self._events is not None:
                self._last = self._events[-1] if self._events else None
            else:
                raw = self.raw
                end = len(raw)
                while end and raw[end - 1] in b"\r\n":
                    end -= 1
                self._last = _event_at(raw, max(end - 1, 0))
        return self._last

    @property
    def ends(self) -> bool:
        """Whether it holds the stream's last event (`[DONE]`, a Responses API final event)."""
        if self._ends is None:
            self._ends = self._find_end()
        return self._ends

    def _find_end(self) -> bool:
        raw = self.raw  # (byte searches first: a regex over a long block costs ten times more)
        if b"[DONE]" not in raw and (b'"response.' not in raw or _MAY_END.search(raw) is None):
            return False
        last = self.last_event
        if last is not None and last.is_done:
            return True
        return any(event.is_done for event in self.events)  # (something came after it)

    def usage_only_events(self) -> list[Event]:
        """Its usage-only chunks, each cut out alone."""
        found = self._usage_only
        if found is None:
            raw = self.raw
            if _USAGE not in raw:
                return _NONE
            found = self._usage_only = []
            for at in _no_choices(raw):
                event = _event_at(raw, at)
                if event is not None and event.usage_only and (
                        not found or found[-1].start != event.start):
                    found.append(event)
        return found

    def drop(self, event: Event) -> None:
        if self._dropped is None:
            self._dropped = []
        self._dropped.append(event)

    def out(self) -> bytes:
        """The bytes to send on: the block, less what was dropped."""
        if self._dropped is None:
            return self.raw
        raw, parts, at = self.raw, [], 0
        for event in sorted(self._dropped, key=lambda e: e.start):
            parts.append(raw[at:event.start])
            at = event.end
        parts.append(raw[at:])
        return b"".join(parts)


def _no_choices(raw: bytes) -> list[int]:
    """Where `"choices": []` appears (compact JSON found by byte search, else by regex)."""
    found = []
    at = raw.find(_COMPACT_NO_CHOICES)
    while at >= 0:
        found.append(at)
        at = raw.find(_COMPACT_NO_CHOICES, at + 1)
    return found or [m.start() for m in _NO_CHOICES.finditer(raw)]


def _event_at(raw: bytes, pos: int) -> Event | None:
    """The event holding byte ``pos`` of ``raw``, with its offsets in ``raw``."""
    start = 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = raw.rfind(separator, 0, pos)
        if at >= 0:
            start = max(start, at + len(separator))
    found = _BOUNDARY.search(raw, pos)
    end = len(raw) if found is None else found.end()
    events = parse(raw[start:end])
    if not events:
        return None
    event = events[-1]
    event.start += start
    event.end += start
    return event


def parse(raw: bytes) -> list[Event]:
    """The events of ``raw``, each with its data lines' payload (comments and other fields
    skipped; several data lines joined with a newline, as the SSE format says)."""
    events: list[Event] = []
    start = 0
    size = len(raw)
    while start < size:
        found = _BOUNDARY.search(raw, start)
        end = size if found is None else found.end()
        stop = end if found is None else found.start()
        if raw.startswith(b"data:", start) and raw.find(b"\n", start, stop) < 0 \
                and raw.find(b"\r", start, stop) < 0:
            # One data line, the usual event: no line splitting.
            payload = raw[start + 5:stop]
            events.append(Event(payload[1:] if payload[:1] == b" " else payload, start, end))
        else:
            data = [line[5:].removeprefix(b" ") for line in raw[start:stop].splitlines()
                    if line.startswith(b"data:")]
            if data:
                events.append(Event(b"\n".join(data), start, end))
        start = end
    return events
