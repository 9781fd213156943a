"""OTLP's ExportTraceServiceRequest in protobuf, written by hand (no protobuf runtime needed).

Field numbers are opentelemetry-proto's (collector/trace/v1/trace_service.proto,
trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto); the tests decode
what this writes with that package's generated classes. One request carries one resource
(this process) and one scope (`llm_gateway`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from llm_gateway.tracing.spans import RecordedSpan

_U64 = (1 << 64) - 1
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL = [bytes([n]) for n in range(128)]  # one-byte varints, the common case


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # a lone surrogate would make invalid UTF-8


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n] if n >= 0 else _varint(n & _U64)  # int64: two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (a string, bytes or a message)."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


# Tags, by message (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
_REQ_RESOURCE_SPANS = _tag(1, 2)
_RS_RESOURCE, _RS_SCOPE_SPANS = _tag(1, 2), _tag(2, 2)
_RES_ATTRIBUTES = _tag(1, 2)
_SS_SCOPE, _SS_SPANS = _tag(1, 2), _tag(2, 2)
_SCOPE_NAME, _SCOPE_VERSION = _tag(1, 2), _tag(2, 2)
_KV_KEY, _KV_VALUE = _tag(1, 2), _tag(2, 2)
_AV_STRING, _AV_BOOL, _AV_INT, _AV_DOUBLE = _tag(1, 2), _tag(2, 0), _tag(3, 0), _tag(4, 1)
_AV_ARRAY, _AV_BYTES, _ARRAY_VALUES = _tag(5, 2), _tag(7, 2), _tag(1, 2)
_SP_TRACE_ID, _SP_SPAN_ID, _SP_TRACE_STATE = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_SP_PARENT, _SP_NAME, _SP_KIND = _tag(4, 2), _tag(5, 2), _tag(6, 0)
_SP_START, _SP_END, _SP_ATTRIBUTES = _tag(7, 1), _tag(8, 1), _tag(9, 2)
_SP_EVENTS, _SP_STATUS, _SP_FLAGS = _tag(11, 2), _tag(15, 2), _tag(16, 5)
_EV_TIME, _EV_NAME, _EV_ATTRIBUTES = _tag(1, 1), _tag(2, 2), _tag(3, 2)
_ST_MESSAGE, _ST_CODE = _tag(2, 2), _tag(3, 0)
# Span.flags: the W3C trace flags (sampled) in the low byte, then whether the parent is
# known to be remote (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE) and is (SPAN_FLAGS_CONTEXT_IS_REMOTE).
_FLAGS_LOCAL = struct.pack("<I", 0x101)
_FLAGS_REMOTE = struct.pack("<I", 0x301)


def any_value(value: Any) -> bytes:
    """An AnyValue message's body. Every oneof member is written even when empty ("", 0,
    False): the receiver then knows which it is."""
    if isinstance(value, str):
        return _field(_AV_STRING, _utf8(value))
    if isinstance(value, bool):  # before int: a bool is an int
        return _AV_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return _AV_INT + _varint(value & _U64 if value < 0 else value)
    if isinstance(value, float):
        return _AV_DOUBLE + _DOUBLE(value)
    if isinstance(value, (list, tuple)):
        return _field(_AV_ARRAY, b"".join(_field(_ARRAY_VALUES, any_value(v)) for v in value))
    if isinstance(value, (bytes, bytearray)):
        return _field(_AV_BYTES, bytes(value))
    return _field(_AV_STRING, _utf8(str(value)))


# Encoded keys, and whole attribute fields with a string or int value: the same few (method,
# path, model, team, status) come back in every span, so most are written once. Bounded without
# a sweep: a key keeps at most _VALUES_PER_KEY values (an id, new each request, soon stops
# being kept) and at most _CACHE_KEYS keys are kept.
_CACHE_KEYS = 512
_VALUES_PER_KEY = 64
_KEYS: dict[str, bytes] = {}
# tag -> value type -> key -> value -> field (by type: True == 1, yet they encode apart)
_FIELDS: dict[bytes, dict[type, dict[str, dict[Any, bytes]]]] = {}


def _kept_field(kept: dict[str, bytes], tag: bytes, text: str) -> bytes:
    """A string field, written once and kept in ``kept`` (up to _CACHE_KEYS of them)."""
    encoded = kept.get(text)
    if encoded is None:
        encoded = _field(tag, _utf8(text))
        if len(kept) < _CACHE_KEYS:
            kept[text] = encoded
    return encoded


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message's body."""
    value_body = any_value(value)
    n = len(value_body)
    length = _SMALL[n] if n < 0x80 else _varint(n)
    return _kept_field(_KEYS, _KV_KEY, key) + _KV_VALUE + length + value_body


def _key_values(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated KeyValue under ``tag``; None values are left out."""
    tables = _FIELDS.get(tag)
    if tables is None:
        tables = _FIELDS[tag] = {str: {}, int: {}}
    out = []
    for key, value in attributes.items():
        by_key = tables.get(type(value))
        if by_key is None:  # a float, bool, list...: written each time
            if value is not None:
                out.append(_field(tag, _key_value(key, value)))
            continue
        by_value = by_key.get(key)
        field = by_value.get(value) if by_value is not None else None
        if field is None:
            field = _field(tag, _key_value(key, value))
            if by_value is None and len(by_key) < _CACHE_KEYS:
                by_value = by_key[key] = {}
            if by_value is not None and len(by_value) < _VALUES_PER_KEY:
                by_value[value] = field
        out.append(field)
    return b"".join(out)


def resource(attributes: Mapping[str, Any]) -> bytes:
    """A Resource message's body (once per exporter: it never changes)."""
    return _key_values(_RES_ATTRIBUTES, attributes)


def scope(name: str, version: str = "") -> bytes:
    body = _field(_SCOPE_NAME, name.encode())
    return body + _field(_SCOPE_VERSION, version.encode()) if version else body


_NAMES: dict[str, bytes] = {}  # span names, as their field: a few come back every request
_TIMES = struct.Struct("<BQBQ").pack  # start and end: tag, fixed64, tag, fixed64
_START_TAG, _END_TAG = _SP_START[0], _SP_END[0]
_KIND_FIELDS = [_SP_KIND + _varint(kind) for kind in range(6)]
_TRACE_ID_HEAD, _SPAN_ID_HEAD, _PARENT_HEAD = _SP_TRACE_ID + b"\x10", _SP_SPAN_ID + b"\x08", \
    _SP_PARENT + b"\x08"


def span(s: RecordedSpan) -> bytes:
    """A Span message's body."""
    parts = [_TRACE_ID_HEAD, s.trace_id, _SPAN_ID_HEAD, s.span_id]
    if s.tracestate:
        parts.append(_field(_SP_TRACE_STATE, s.tracestate.encode()))
    if s.parent_id:
        parts += (_PARENT_HEAD, s.parent_id)
    kind = _KIND_FIELDS[s.kind] if 0 <= s.kind < 6 else _SP_KIND + _varint(s.kind)
    parts += (_kept_field(_NAMES, _SP_NAME, s.name), kind,
              _TIMES(_START_TAG, s.start_ns, _END_TAG, s.end_ns))
    if s.attributes:
        parts.append(_key_values(_SP_ATTRIBUTES, s.attributes))
    for name, at_ns, attributes in s.events:
        event = _EV_TIME + _FIXED64(at_ns) + _field(_EV_NAME, _utf8(name))
        if attributes:
            event += _key_values(_EV_ATTRIBUTES, attributes)
        parts.append(_field(_SP_EVENTS, event))
    if s.status_code:
        status = _ST_CODE + _varint(s.status_code)
        if s.status_message:
            status = _field(_ST_MESSAGE, _utf8(s.status_message)) + status
        parts.append(_field(_SP_STATUS, status))
    parts += (_SP_FLAGS, _FLAGS_REMOTE if s.remote_parent else _FLAGS_LOCAL)
    return b"".join(parts)


def span_field(s: RecordedSpan) -> bytes:
    """A span as its field of ScopeSpans: what the exporter queues (bytes, written once the
    span ends: the span and its dicts then die at once, and a batch is a join)."""
    return _field(_SS_SPANS, span(s))


def export_request(resource_body: bytes, scope_body: bytes,
                   span_fields: Iterable[bytes]) -> bytes:
    """An ExportTraceServiceRequest holding spans (each from `span_field`), all of one
    resource and scope."""
    scope_spans = _field(_SS_SCOPE, scope_body) + b"".join(span_fields)
    resource_spans = _field(_RS_RESOURCE, resource_body) + _field(_RS_SCOPE_SPANS, scope_spans)
    return _field(_REQ_RESOURCE_SPANS, resource_spans)
