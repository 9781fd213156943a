"""W3C traceparent/tracestate and the ParentBased(TraceIdRatioBased) sampler (context.py), and
the native tracer's decisions built on them."""

from __future__ import annotations

import pytest

from llm_gateway.tracing.context import (
    RatioSampler,
    format_traceparent,
    parse_traceparent,
    valid_tracestate,
)
from llm_gateway.tracing.native import NativeTracer
from llm_gateway.tracing.spans import QuietSpan, RecordedSpan
from llm_gateway.tracing.transport import Sent

from tracing_support import CLIENT_SPAN, CLIENT_TRACE, TRACEPARENT


class Nowhere:
    def send(self, payload: bytes, timeout: float) -> Sent:
        return Sent(True)

    def close(self) -> None:
        pass


def test_a_valid_traceparent_is_read():
    parent = parse_traceparent(TRACEPARENT, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")
    assert parent is not None
    assert parent.trace_id.hex() == CLIENT_TRACE and parent.span_id.hex() == CLIENT_SPAN
    assert parent.sampled and parent.tracestate == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert not parse_traceparent(TRACEPARENT[:-2] + "00").sampled  # type: ignore[union-attr]


@pytest.mark.parametrize("header", [
    "", "garbage", TRACEPARENT.upper(), TRACEPARENT + "-extra",  # version 00: exactly 55
    f"00-{'0' * 32}-{CLIENT_SPAN}-01", f"00-{CLIENT_TRACE}-{'0' * 16}-01",
    f"ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01", f"0g-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-1", f"00_{CLIENT_TRACE}-{CLIENT_SPAN}-01",
    f"00-{CLIENT_TRACE[:-1]}x-{CLIENT_SPAN}-01", f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-0z",
    f"01-{CLIENT_TRACE}-{CLIENT_SPAN}-01x",  # a later version: more only after a '-'
])
def test_a_malformed_traceparent_is_none(header):
    assert parse_traceparent(header) is None


def test_a_later_version_is_read_forward_compatibly():
    parent = parse_traceparent(f"cc-{CLIENT_TRACE}-{CLIENT_SPAN}-01-what-comes-next")
    assert parent is not None and parent.trace_id.hex() == CLIENT_TRACE and parent.sampled


@pytest.mark.parametrize("header", ["a", "a=1,a=2", "UP=1", "a=b=c,", "k=" + "v" * 300,
                                    ",".join(f"k{i}=v" for i in range(33))])
def test_a_malformed_tracestate_is_dropped(header):
    assert valid_tracestate(header) == ""


def test_format_is_the_inverse_of_parse():
    parent = parse_traceparent(TRACEPARENT)
    assert parent is not None
    assert format_traceparent(parent.trace_id, parent.span_id, parent.flags) == TRACEPARENT


def test_the_ratio_sampler_compares_the_low_64_bits():
    half = RatioSampler(0.5)
    assert half.new_trace(bytes(8) + (2**63 - 1).to_bytes(8, "big"))
    assert not half.new_trace(b"\xff" * 8 + (2**63).to_bytes(8, "big"))
    assert RatioSampler(1.0).new_trace(b"\xff" * 16)
    assert not RatioSampler(0.0).new_trace(bytes(15) + b"\x01")
    with pytest.raises(ValueError):
        RatioSampler(1.5)


def test_the_tracer_follows_the_clients_flag_and_samples_new_traces_by_ratio():
    never = NativeTracer(Nowhere(), service_name="t", sample_ratio=0.0, record_content=False)
    always = NativeTracer(Nowhere(), service_name="t", sample_ratio=1.0, record_content=False)
    try:
        assert isinstance(never.start("new"), QuietSpan)
        kept = never.start("continued", {"traceparent": TRACEPARENT, "tracestate": "a=1"})
        assert isinstance(kept, RecordedSpan) and kept.recording
        assert kept.parent_id.hex() == CLIENT_SPAN and kept.remote_parent
        unsampled = TRACEPARENT[:-2] + "00"
        quiet = always.start("x", {"traceparent": unsampled, "tracestate": "a=1"})
        assert not quiet.recording
        headers = {"tracestate": "client=stale"}
        quiet.child("attempt").inject(headers)  # not recorded, still propagated
        assert headers["traceparent"].startswith(f"00-{CLIENT_TRACE}-")
        assert headers["traceparent"].endswith("-00") and CLIENT_SPAN not in headers["traceparent"]
        assert headers["tracestate"] == "a=1"
        assert quiet.ids() is not None and quiet.ids()[0] == CLIENT_TRACE  # type: ignore[index]
        fresh = always.start("malformed", {"traceparent": "00-zz", "tracestate": "a=1"})
        out = {"tracestate": "a=1"}
        fresh.inject(out)
        assert "tracestate" not in out  # the client's, for a trace this hop does not continue
        assert CLIENT_TRACE not in out["traceparent"] and out["traceparent"].endswith("-01")
        assert isinstance(fresh, RecordedSpan) and fresh.parent_id == b""
    finally:
        never.shutdown()
        always.shutdown()
