"""Embeddings and the model list of the fake OpenAI upstream. Pure functions, no I/O."""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson

from llm_gateway.testing.fake_answer import _model, count_words
from llm_gateway.testing.fake_wire import BadRequest

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "o3-mini",
    "text-embedding-3-small",
    "dall-e-3",
)
MODEL_CREATED = 1_700_000_000
DEFAULT_DIMENSIONS = 8
MAX_DIMENSIONS = 3072  # OpenAI's largest (text-embedding-3-large); more is its 400 too


# --- embeddings -------------------------------------------------------------------------------


def embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """Deterministic vector in [-1, 1] from a hash of ``key``; values are exact float32."""
    raw = b""
    block = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(key + block.to_bytes(4, "little")).digest()
        block += 1
    ints = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    floats = [i / 0xFFFFFFFF * 2.0 - 1.0 for i in ints]
    # Round through float32 so the float and base64 encodings carry the same numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *floats)))


def _embedding_inputs(value: Any) -> list[tuple[bytes, int]]:
    """(hash key, token count) per input; a flat int list is one token-id input, as in OpenAI."""
    if isinstance(value, str):
        return [(value.encode(), count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [(orjson.dumps(value), len(value))]
        out: list[tuple[bytes, int]] = []
        for item in value:
            if isinstance(item, str):
                out.append((item.encode(), count_words(item)))
            elif isinstance(item, list) and all(isinstance(v, int) for v in item):
                out.append((orjson.dumps(item), len(item)))
            else:
                raise BadRequest("Invalid 'input': expected strings or token arrays.", "input")
        return out
    raise BadRequest("Missing required parameter: 'input'.", "input")


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    model = _model(body)
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise BadRequest("Invalid 'dimensions': expected a positive integer.", "dimensions")
    if dimensions > MAX_DIMENSIONS:
        # Also keeps one request from tying up the fake's event loop for minutes.
        raise BadRequest(f"Invalid 'dimensions': integer above maximum value. Expected a "
                         f"value <= {MAX_DIMENSIONS}, but got {dimensions} instead.",
                         "dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, (key, count) in enumerate(_embedding_inputs(body.get("input"))):
        tokens += count
        vector = embedding_vector(key, dimensions)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- models -----------------------------------------------------------------------------------


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}


def model_list(models: list[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}
