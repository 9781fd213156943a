"""What a passthrough call used, as far as its request and its answer say.

Tokens wherever a `usage` object reports them (gpt-image, token-billed transcriptions,
embeddings-like answers, a stream's last usage event); besides tokens, one count of the
family's own unit: images returned, characters of speech asked for, seconds transcribed. And
the id of the object an answer returns (a batch, a file, a vector store...).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.accounting.usage import usage_from_body
from llm_gateway.usage import Usage

ID_LIMIT = 128  # characters of an object id kept
INFLATE_LIMIT = 1 << 20  # a compressed answer is read for usage up to this size


@dataclass(slots=True)
class Units:
    usage: Usage | None = None
    count: float = 0.0
    unit: str | None = None  # "images", "characters", "seconds"
    object_id: str | None = None


def from_request(path: str, body: dict[str, Any] | None) -> Units:
    """What the request itself says it asks for (speech: the characters to speak)."""
    units = Units()
    if body is not None and path.startswith("/audio/speech"):
        text = body.get("input")
        if isinstance(text, str):
            units.count, units.unit = float(len(text)), "characters"
    return units


def from_answer(units: Units, family: str, answer: bytes, encoding: str | None
                ) -> dict[str, Any] | None:
    """Add what a whole JSON answer reports to `units`; the answer, parsed (None when it is
    not a JSON object)."""
    data = _decoded(answer, encoding)
    if data is None:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    units.usage = Usage.from_object(obj.get("usage"))
    found = obj.get("id")
    if isinstance(found, str) and found:
        units.object_id = found[:ID_LIMIT]
    if family == "images" and isinstance(obj.get("data"), list):
        units.count, units.unit = float(len(obj["data"])), "images"
    elif family == "audio" and units.unit is None:
        seconds = _seconds(obj)
        if seconds is not None:
            units.count, units.unit = seconds, "seconds"
    return obj


def from_stream_tail(units: Units, tail: bytes, encoding: str | None) -> None:
    """The usage of a streamed answer (SSE), from the last event that reports one."""
    data = _decoded(tail, encoding)
    if data is not None:
        units.usage = usage_from_body(data)


def _seconds(obj: dict[str, Any]) -> float | None:
    usage = obj.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        value = usage.get("seconds")
    else:
        value = obj.get("duration")  # verbose_json transcriptions
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _decoded(data: bytes, encoding: str | None) -> bytes | None:
    """`data` without its Content-Encoding (gzip and deflate; None for others or when it is
    cut short), at most INFLATE_LIMIT bytes of it."""
    if not encoding or encoding == "identity":
        return data
    if encoding not in ("gzip", "deflate"):
        return None
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(data, INFLATE_LIMIT)
    except zlib.error:
        return None
    return out if inflater.eof else None
