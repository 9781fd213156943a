"""W3C Trace Context (traceparent, tracestate) and the sampling decision, without OpenTelemetry.

The rules are the W3C recommendation's (https://www.w3.org/TR/trace-context/) and the
sampler is OpenTelemetry's ParentBased(TraceIdRatioBased(ratio)): a client's sampled flag
decides for its own trace; a new trace is kept when its trace id's low 64 bits are below
ratio * 2**64, so every hop that sees the same id decides alike.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

SAMPLED = 0x01  # the trace-flags bit saying the caller records this trace
_LOW_64 = (1 << 64) - 1
# tracestate: at most 32 list members (W3C); a key is lowercase (with an optional tenant@),
# a value printable ASCII but ',' and '=', not ending in a space.
_MAX_MEMBERS = 32
_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/]{0,255}(@[a-z][a-z0-9_\-*/]{0,13})?\Z")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")


@dataclass(frozen=True, slots=True)
class Parent:
    """A caller's span, from its traceparent: the trace this request continues."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    flags: int  # trace-flags (SAMPLED)
    tracestate: str  # "" when none or malformed

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)


# version-trace_id-parent_id-flags, lowercase hex; more may follow only in later versions.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z",
                          re.DOTALL)


def parse_traceparent(header: str | None, tracestate: str | None = None) -> Parent | None:
    """The caller's span, or None: no header, or a malformed one (the request then starts a
    new trace). Versions other than 00 are read forward-compatibly (their first four
    fields; more may follow a '-'); version ff is invalid."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip(" \t"))
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (rest is not None and version == "00"):
        return None
    trace_id, span_id = bytes.fromhex(trace), bytes.fromhex(span)
    if not any(trace_id) or not any(span_id):
        return None
    return Parent(trace_id, span_id, int(flags, 16), valid_tracestate(tracestate))


def valid_tracestate(header: str | None) -> str:
    """The tracestate to pass on unchanged, or "" when absent or malformed (W3C: a vendor
    that cannot parse it drops it whole)."""
    if not header:
        return ""
    members = [m.strip(" \t") for m in header.split(",")]
    members = [m for m in members if m]  # empty members are allowed, and dropped
    if not members or len(members) > _MAX_MEMBERS:
        return ""
    keys = set()
    for member in members:
        key, eq, value = member.partition("=")
        if not eq or not _KEY.match(key) or not _VALUE.match(value) or key in keys:
            return ""
        keys.add(key)
    return ",".join(members)


def format_traceparent(trace_id: bytes, span_id: bytes, flags: int) -> str:
    return f"00-{trace_id.hex()}-{span_id.hex()}-{flags & 0xFF:02x}"


def new_trace_id() -> bytes:
    # `or 1`: an all-zero id is invalid (a 2**-128 chance, not worth a loop)
    return (random.getrandbits(128) or 1).to_bytes(16, "big")


def new_span_id() -> bytes:
    return (random.getrandbits(64) or 1).to_bytes(8, "big")


class RatioSampler:
    """OpenTelemetry's ParentBased(TraceIdRatioBased(ratio)), deciding once per trace."""

    __slots__ = ("bound",)

    def __init__(self, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"sample ratio {ratio} is not in [0, 1]")
        self.bound = round(ratio * (1 << 64))  # as the SDK computes it

    def new_trace(self, trace_id: bytes) -> bool:
        """Whether a trace this gateway starts is recorded."""
        return int.from_bytes(trace_id[8:], "big") & _LOW_64 < self.bound

    @staticmethod
    def continued(parent: Parent) -> bool:
        """Whether a caller's trace is recorded here: the caller's flag decides."""
        return parent.sampled
