"""Reading a GGUF file's header: its metadata and the size of each tensor, nothing more.

Enough for a memory estimate before a worker loads the model (memory.py), without llama.cpp
or the `gguf` package. The layout (little-endian, GGUF version 2 and 3): the magic ``GGUF``, a
uint32 version, uint64 tensor and metadata counts; the metadata as (string key, uint32 type,
value); then per tensor its name, uint32 dimension count, uint64 dimensions, uint32 type and
uint64 offset into the data section, which starts at the next multiple of
``general.alignment`` (32 by default). A tensor's size is the distance from its offset to the
next tensor's (the last one's: to the end of the file), so no table of quantization block
sizes is needed; alignment padding (under 32 bytes a tensor) is counted with it.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_STRING_BYTES = 1 << 24  # a key or value longer than 16 MiB means a broken file
MAX_ARRAY_ITEMS = 1 << 26  # vocabularies run to a few hundred thousand entries
MAX_DIMENSIONS = 8

# Metadata value types -> struct format of one scalar; 8 (string) and 9 (array) are read apart.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}
_STRUCTS = {fmt: struct.Struct("<" + fmt) for fmt in [*_SCALARS.values(), "Q", "I"]}
_STRING, _ARRAY = 8, 9
MAX_KEPT_ITEMS = 1024


class GGUFError(ValueError):
    """Not a GGUF file this reader understands, or a truncated one."""


@dataclass(frozen=True)
class GGUFInfo:
    metadata: dict[str, Any]
    tensors: dict[str, int] = field(default_factory=dict)  # name -> bytes in the data section
    file_bytes: int = 0
    lengths: dict[str, int] = field(default_factory=dict)  # array key -> its item count

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "llama"))

    def arch(self, key: str, default: Any = None) -> Any:
        """An architecture-scoped value: ``arch("block_count")`` reads ``llama.block_count``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(self.tensors.values())


class _Reader:
    """Reads from a memory map of the file: the header of a big model has a vocabulary of a
    few hundred thousand strings, which small reads of a file object would take long over."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise GGUFError("the file ends inside its header")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.data):
            raise GGUFError("the file ends inside its header")

    def scalar(self, fmt: str) -> Any:
        unpacker = _STRUCTS[fmt]
        if self.pos + unpacker.size > len(self.data):
            raise GGUFError("the file ends inside its header")
        value = unpacker.unpack_from(self.data, self.pos)[0]
        self.pos += unpacker.size
        return value

    def string(self) -> str:
        n = self.scalar("Q")
        if n > MAX_STRING_BYTES:
            raise GGUFError(f"a string of {n} bytes")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int, *, keep: bool = True) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar("I"), self.scalar("Q")
            if count > MAX_ARRAY_ITEMS:
                raise GGUFError(f"an array of {count} items")
            if keep and item_kind != _ARRAY and count <= MAX_KEPT_ITEMS:
                return [self.value(item_kind) for _ in range(count)]
            if item_kind in _SCALARS:
                self.skip(count * _STRUCTS[_SCALARS[item_kind]].size)
            elif item_kind == _STRING:
                for _ in range(count):  # a vocabulary: each string's length, then past it
                    self.skip(self.scalar("Q"))
            else:
                for _ in range(count):
                    self.value(item_kind, keep=False)
            return None
        raise GGUFError(f"unknown metadata value type {kind}")


def read_gguf(path: str | Path) -> GGUFInfo:
    """The metadata and tensor sizes of ``path``. Long arrays (the vocabulary, the merges)
    are skipped: only arrays of at most ``MAX_KEPT_ITEMS`` items are kept (per-layer head
    counts and the like)."""
    path = Path(path)
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise GGUFError(f"{path.name} is not a GGUF file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            r = _Reader(data)
            if r.take(4) != MAGIC:
                raise GGUFError(f"{path.name} is not a GGUF file")
            version = r.scalar("I")
            if version not in (2, 3):
                raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are)")
            n_tensors, n_kv = r.scalar("Q"), r.scalar("Q")
            metadata: dict[str, Any] = {}
            lengths: dict[str, int] = {}
            for _ in range(n_kv):
                key, kind = r.string(), r.scalar("I")
                if kind == _ARRAY:  # its length, kept even when its items are skipped
                    lengths[key] = _STRUCTS["Q"].unpack_from(data, r.pos + 4)[0]
                value = r.value(kind)
                if value is not None:
                    metadata[key] = value
            offsets: list[tuple[int, str]] = []
            for _ in range(n_tensors):
                name = r.string()
                n_dims = r.scalar("I")
                if n_dims > MAX_DIMENSIONS:
                    raise GGUFError(f"tensor {name} has {n_dims} dimensions")
                r.skip(8 * n_dims + 4)  # dimensions and type: sizes come from the offsets
                offsets.append((r.scalar("Q"), name))
            header_end = r.pos
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    start = -(-header_end // alignment) * alignment
    offsets.sort()
    ends = [o for o, _ in offsets[1:]] + [size - start]
    tensors = {name: max(0, end - offset)
               for (offset, name), end in zip(offsets, ends, strict=True)}
    return GGUFInfo(metadata, tensors, size, lengths)
