"""Helpers for the tracing tests: a gateway exporting to a real OTLP/HTTP receiver, and the
span tree it received."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from llm_gateway.testing.gateway import GatewayServer
from llm_gateway.testing.otlp_receiver import OtlpReceiver, ReceivedSpan

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
PROMPT = "Tell me about the purple elephant xyzzy-prompt-marker."


def tracing(receiver: OtlpReceiver, **extra) -> dict:
    return {"enabled": True, "endpoint": receiver.url, **extra}


def spans_until(gateway: GatewayServer, receiver: OtlpReceiver,
                done: Callable[[list[ReceivedSpan]], bool],
                timeout: float = 15.0) -> list[ReceivedSpan]:
    """The spans received once ``done`` holds, flushing the gateway's exporter meanwhile (a
    request's span ends just after its last byte)."""
    assert gateway.app is not None
    tracer = gateway.app.state.tracer
    deadline = time.monotonic() + timeout
    while True:
        tracer.flush()
        spans = list(receiver.spans)
        if done(spans) or time.monotonic() > deadline:
            return receiver.wait_for(done, timeout=0.1)
        time.sleep(0.05)


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in spans]}"
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id]


def everything_said(receiver: OtlpReceiver) -> str:
    """Every span's attributes and events as text, and the raw export payloads."""
    text = json.dumps([[s.name, s.attributes, s.events, s.status_message]
                       for s in receiver.spans], default=str)
    return text + "\n".join(p.decode("latin-1") for p in receiver.raw)
