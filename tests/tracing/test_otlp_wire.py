"""The hand-written OTLP encoder (otlp_wire.py), decoded by opentelemetry-proto's generated
classes and compared field by field."""

from __future__ import annotations

import struct

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from llm_gateway.tracing import otlp_wire
from llm_gateway.tracing.native import resource_attributes
from llm_gateway.tracing.spans import RecordedSpan

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
PARENT = bytes.fromhex("00f067aa0ba902b7")


def _value(value: AnyValue):
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return (which, getattr(value, which))


def _decode(payload: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    return request


ATTRIBUTES = {
    "s": "text", "empty": "", "unicode": "héllo → 世界 🐘", "t": True, "f": False, "zero": 0,
    "big": 2**62, "negative": -42, "min": -(2**63), "pi": 3.25, "nought": 0.0,
    "strings": ["a", "", "é"], "ints": (1, -2, 0), "floats": [0.5, -1.0], "bools": [True],
    "empty_list": [], "none": None,
}
EXPECTED = {
    "s": ("string_value", "text"), "empty": ("string_value", ""),
    "unicode": ("string_value", "héllo → 世界 🐘"), "t": ("bool_value", True),
    "f": ("bool_value", False), "zero": ("int_value", 0), "big": ("int_value", 2**62),
    "negative": ("int_value", -42), "min": ("int_value", -(2**63)),
    "pi": ("double_value", 3.25), "nought": ("double_value", 0.0),
    "strings": [("string_value", "a"), ("string_value", ""), ("string_value", "é")],
    "ints": [("int_value", 1), ("int_value", -2), ("int_value", 0)],
    "floats": [("double_value", 0.5), ("double_value", -1.0)],
    "bools": [("bool_value", True)], "empty_list": [],
}


def _span(ended: list[RecordedSpan], **kwargs) -> RecordedSpan:
    return RecordedSpan(ended.append, TRACE, kwargs.pop("parent", b""), kwargs.pop("name", "n"),
                        kwargs.pop("kind", 2), kwargs.pop("attributes", None),
                        kwargs.pop("start_ns", 1_700_000_000_123_456_789), **kwargs)


def test_every_field_round_trips():
    ended: list[RecordedSpan] = []
    root = _span(ended, parent=PARENT, name="POST /v1/chat/completions ✓",
                 attributes=ATTRIBUTES, tracestate="congo=t61", remote_parent=True)
    root.event("gen_ai.first_token", {"n": 1, "u": "ü"}, at_ns=1_700_000_000_200_000_000)
    root.event("bare", at_ns=5)
    root.fail("timeout", "upstream took 30 s — too long")
    child = root.child("auth", kind="client", start_ns=1_700_000_000_123_456_790)
    child.end(2**63 + 5)  # a fixed64, not a varint: the top bit survives
    root.end(1_700_000_000_999_999_999)
    payload = otlp_wire.export_request(otlp_wire.resource(resource_attributes("svc")),
                                       otlp_wire.scope("llm_gateway", "1.0"),
                                       map(otlp_wire.span_field, ended))
    request = _decode(payload)
    assert len(request.resource_spans) == 1
    resource_spans = request.resource_spans[0]
    resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == ("string_value", "svc")
    assert resource["telemetry.sdk.language"] == ("string_value", "python")
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("llm_gateway", "1.0")
    first, second = scope_spans.spans
    assert first.name == "auth" and second.name == "POST /v1/chat/completions ✓"
    assert first.trace_id == second.trace_id == TRACE
    assert first.parent_span_id == second.span_id == root.span_id
    assert len(second.span_id) == 8 and second.parent_span_id == PARENT
    assert (first.kind, second.kind) == (3, 2)
    assert first.start_time_unix_nano == 1_700_000_000_123_456_790
    assert first.end_time_unix_nano == 2**63 + 5
    assert second.start_time_unix_nano == 1_700_000_000_123_456_789
    assert second.end_time_unix_nano == 1_700_000_000_999_999_999
    assert second.trace_state == "congo=t61" and first.trace_state == "congo=t61"
    assert second.flags == 0x301 and first.flags == 0x101  # sampled; parent remote or not
    attributes = {kv.key: _value(kv.value) for kv in second.attributes}
    assert attributes == {**EXPECTED, "error.type": ("string_value", "timeout")}
    assert [kv.key for kv in first.attributes] == []
    assert [(e.name, e.time_unix_nano) for e in second.events] == [
        ("gen_ai.first_token", 1_700_000_000_200_000_000), ("bare", 5),
        ("exception", second.events[2].time_unix_nano)]
    assert {kv.key: _value(kv.value) for kv in second.events[0].attributes} == {
        "n": ("int_value", 1), "u": ("string_value", "ü")}
    assert list(second.events[1].attributes) == []
    assert {kv.key: _value(kv.value) for kv in second.events[2].attributes} == {
        "exception.type": ("string_value", "timeout"),
        "exception.message": ("string_value", "upstream took 30 s — too long")}
    assert second.status.code == 2 and second.status.message == "upstream took 30 s — too long"
    assert first.status.code == 0 and first.status.message == ""


def test_an_empty_batch_and_odd_values_still_decode():
    request = _decode(otlp_wire.export_request(otlp_wire.resource({}), otlp_wire.scope("x"),
                                               []))
    assert list(request.resource_spans[0].scope_spans[0].spans) == []
    ended: list[RecordedSpan] = []
    span = _span(ended, name="", attributes={"lone": "\ud800", "obj": {"a": 1}})
    span.end(10)
    (decoded,) = _decode(otlp_wire.export_request(b"", b"", map(otlp_wire.span_field, ended))) \
        .resource_spans[0].scope_spans[0].spans
    values = {kv.key: _value(kv.value) for kv in decoded.attributes}
    assert decoded.name == "" and values["lone"] == ("string_value", "?")
    assert values["obj"] == ("string_value", "{'a': 1}")  # not an OTLP type: as text


def test_a_double_is_little_endian_ieee754():
    assert otlp_wire.any_value(1.5) == b"\x21" + struct.pack("<d", 1.5)


def test_kept_encodings_never_mix_values_up():
    """Strings and ints are encoded once and kept by key and value: a bool that equals an
    int, an id new each span, and long values (multi-byte lengths) all still decode as set."""
    ended: list[RecordedSpan] = []
    sets = [{"n": 1}, {"n": True}, {"n": 1.0}, {"n": 0}, {"n": False}, {"n": "1"}]
    sets += [{"id": f"req_{i}", "n": i} for i in range(200)]  # past what a key keeps
    sets += [{"long": "é" * 300, "name": "x" * 20000}]
    for i, attributes in enumerate(sets):
        span = _span(ended, name=f"span {i % 3}" + "!" * (200 if i == 7 else 0),
                     attributes=attributes)
        span.end(10)
    for _ in range(2):  # the second time from what the first kept
        spans = _decode(otlp_wire.export_request(b"", b"", map(otlp_wire.span_field, ended))) \
            .resource_spans[0].scope_spans[0].spans
        assert len(spans) == len(sets)
        for i, (decoded, attributes) in enumerate(zip(spans, sets, strict=True)):
            assert decoded.name == f"span {i % 3}" + "!" * (200 if i == 7 else 0)
            got = {kv.key: _value(kv.value) for kv in decoded.attributes}
            assert got == {key: (_KIND[type(value)], value) for key, value in attributes.items()}
            assert all(type(got[k][1]) is type(v) for k, v in attributes.items())


_KIND = {str: "string_value", int: "int_value", bool: "bool_value", float: "double_value"}
