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


# Encoded keys, and whole KeyValues with a string value: the same few (method, path, model,
# team) come back in every span, so most are written once. Bounded: cleared when full.
_CACHE_MAX = 4096
_KEYS: dict[str, bytes] = {}
_STRING_KVS: dict[tuple[str, str], bytes] = {}


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message's body."""
    if type(value) is str:
        kv = _STRING_KVS.get((key, value))
        if kv is None:
            if len(_STRING_KVS) >= _CACHE_MAX:
                _STRING_KVS.clear()
            kv = _STRING_KVS[key, value] = _field(_KV_KEY, _utf8(key)) + _field(
                _KV_VALUE, any_value(value))
        return kv
    encoded_key = _KEYS.get(key)
    if encoded_key is None:
        if len(_KEYS) >= _CACHE_MAX:
            _KEYS.clear()
        encoded_key = _KEYS[key] = _field(_KV_KEY, _utf8(key))
    return encoded_key + _field(_KV_VALUE, any_value(value))


def _key_values(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated KeyValue under ``tag``; None values are left out."""
    return b"".join([_field(tag, _key_value(key, value))
                     for key, value in attributes.items() if value is not None])


def resource(attributes: Mapping[str, Any]) -> bytes:
    """A Resource message's body (once per exporter: it never changes)."""
    return _key_values(_RES_ATTRIBUTES, attributes)


def scope(name: str, version: str = "") -> bytes:
    body = _field(_SCOPE_NAME, name.encode())
    return body + _field(_SCOPE_VERSION, version.encode()) if version else body


def span(s: RecordedSpan) -> bytes:
    """A Span message's body."""
    parts = [_SP_TRACE_ID, b"\x10", s.trace_id, _SP_SPAN_ID, b"\x08", s.span_id]
    if s.tracestate:
        parts.append(_field(_SP_TRACE_STATE, s.tracestate.encode()))
    if s.parent_id:
        parts += (_SP_PARENT, b"\x08", s.parent_id)
    parts += (_field(_SP_NAME, _utf8(s.name)), _SP_KIND,
              _varint(s.kind), _SP_START, _FIXED64(s.start_ns), _SP_END, _FIXED64(s.end_ns))
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
            status = _field(_ST_MESSAGE, _utf8(s.status_message)) \
                + status
        parts.append(_field(_SP_STATUS, status))
    parts += (_SP_FLAGS, _FLAGS_REMOTE if s.remote_parent else _FLAGS_LOCAL)
    return b"".join(parts)


def export_request(resource_body: bytes, scope_body: bytes,
                   spans: Iterable[RecordedSpan]) -> bytes:
    """An ExportTraceServiceRequest holding ``spans``, all of one resource and scope."""
    scope_spans = _field(_SS_SCOPE, scope_body) + b"".join(
        _field(_SS_SPANS, span(s)) for s in spans)
    resource_spans = _field(_RS_RESOURCE, resource_body) + _field(_RS_SCOPE_SPANS, scope_spans)
    return _field(_REQ_RESOURCE_SPANS, resource_spans)
