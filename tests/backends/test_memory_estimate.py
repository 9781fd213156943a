"""Memory estimates from GGUF headers (backends/gguf.py, backends/memory.py): a GGUF file
written here byte by byte, and the bundled SmolLM2 model."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llm_gateway.backends.gguf import GGUFError, read_gguf
from llm_gateway.backends.memory import MIB, PROCESS_MIB, estimate, kv_cells, model_file
from llm_gateway.config import LocalConfig

from gateway_support import require_local_extra


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, kind: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", kind) + payload


def write_gguf(path: Path, metadata: list[bytes], tensors: list[tuple[str, int]],
               alignment: int = 32) -> Path:
    """A GGUF v3 file with these metadata entries and tensors of these sizes, in order."""
    infos, offset = b"", 0
    for name, size in tensors:
        infos += _string(name) + struct.pack("<I", 1) + struct.pack("<Q", size)
        infos += struct.pack("<I", 0) + struct.pack("<Q", offset)
        offset += -(-size // alignment) * alignment
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    header = head + b"".join(metadata) + infos
    padding = -len(header) % alignment
    path.write_bytes(header + b"\0" * padding + b"\1" * offset)
    return path


def tiny_llama(tmp_path: Path, layers: int = 2) -> Path:
    """Two 1 MiB layers, embeddings of 3 MiB, an output layer of 2 MiB; 4 heads, 2 for KV."""
    metadata = [
        _kv("general.architecture", 8, _string("llama")),
        _kv("llama.block_count", 4, struct.pack("<I", layers)),
        _kv("llama.embedding_length", 4, struct.pack("<I", 256)),
        _kv("llama.feed_forward_length", 4, struct.pack("<I", 512)),
        _kv("llama.attention.head_count", 4, struct.pack("<I", 4)),
        _kv("llama.attention.head_count_kv", 4, struct.pack("<I", 2)),
        _kv("llama.context_length", 4, struct.pack("<I", 2048)),
        # The vocabulary: skipped by the reader, its length kept.
        _kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3000)
            + b"".join(_string(f"t{i}") for i in range(3000))),
        _kv("llama.rope.freq_scale", 9, struct.pack("<IQ", 6, 2) + struct.pack("<ff", 1, 2)),
    ]
    tensors = [("token_embd.weight", 3 * MIB)]
    tensors += [(f"blk.{i}.attn_q.weight", MIB) for i in range(layers)]
    tensors += [("output.weight", 2 * MIB)]
    return write_gguf(tmp_path / "tiny.gguf", metadata, tensors)


def test_the_reader_gets_metadata_and_tensor_sizes(tmp_path: Path) -> None:
    info = read_gguf(tiny_llama(tmp_path))
    assert info.architecture == "llama" and info.arch("block_count") == 2
    assert info.metadata["llama.rope.freq_scale"] == [1.0, 2.0]  # short arrays are kept
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.lengths["tokenizer.ggml.tokens"] == 3000
    assert info.tensors == {"token_embd.weight": 3 * MIB, "blk.0.attn_q.weight": MIB,
                            "blk.1.attn_q.weight": MIB, "output.weight": 2 * MIB}


@pytest.mark.parametrize(("data", "message"), [
    (b"GGML" + b"\0" * 40, "is not a GGUF file"),
    (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "GGUF version 1 is not supported"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("k")[:6], "ends inside its header"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _kv("k", 99, b"\0" * 8), "unknown metadata"),
])
def test_broken_files_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)


def test_the_estimate_adds_weights_kv_cache_compute_and_the_process(tmp_path: Path) -> None:
    info = read_gguf(tiny_llama(tmp_path))
    cfg = LocalConfig(model="x", n_ctx=1024, parallel=2, n_batch=64)
    # batching: 2 running sequences of 1024 cells (no cache slots by default); per cell and
    # layer 2 heads x (64 + 64) x 2 bytes (f16); 2 layers.
    assert kv_cells(cfg, 2048) == 2048
    assert kv_cells(LocalConfig(model="x", n_ctx=1024, parallel=2, cache_slots=1), 0) == 3072
    kv = 2048 * 2 * (2 * 128 * 2)
    compute = 2 * 3000 * 4 + 64 * (256 + 512) * 4 * 4  # 2 rows of logits + activations
    cpu = estimate(info, cfg)
    assert cpu.gpu_mib == 0
    assert cpu.host_mib == -(-(7 * MIB + kv + compute + PROCESS_MIB * MIB) // MIB)
    assert cpu.kv_mib == 2 and cpu.weights_mib == 7
    # The simple engine keeps one context; n_ctx 0 is the model's own.
    assert kv_cells(LocalConfig(model="x", n_ctx=0, engine="simple"), 2048) == 2048


def test_offloaded_layers_and_the_output_go_to_the_gpu(tmp_path: Path) -> None:
    info = read_gguf(tiny_llama(tmp_path))
    one = estimate(info, LocalConfig(model="x", n_gpu_layers=1, parallel=2, n_ctx=1024))
    every = estimate(info, LocalConfig(model="x", n_gpu_layers=-1, parallel=2, n_ctx=1024))
    # One layer: its weights (1 MiB) and half the KV cache, plus the compute buffers.
    assert 1 < one.gpu_mib < every.gpu_mib
    # Every layer: the output layer too, never the token embeddings (3 MiB stay on the host).
    kv = 2048 * 2 * (2 * 128 * 2)
    compute = 512 * 3000 * 4 + 512 * (256 + 512) * 4 * 4  # a whole batch of logits on a GPU
    assert every.gpu_mib == -(-(4 * MIB + kv + compute) // MIB)
    assert every.host_mib == 3 + PROCESS_MIB


def test_the_default_model_estimate_is_near_what_a_worker_uses() -> None:
    require_local_extra()
    path = model_file("default")
    assert path is not None
    info = read_gguf(path)
    assert (info.arch("block_count"), info.arch("attention.head_count_kv")) == (30, 3)
    assert info.tensor_bytes == pytest.approx(path.stat().st_size, rel=0.02)
    # Measured here: 211 MiB resident at n_ctx 512, parallel 1; 390 MiB at n_ctx 1024 and 922
    # MiB at 4096 (parallel 8).
    small = estimate(info, LocalConfig(model="default", n_ctx=512, parallel=1))
    bigger = estimate(info, LocalConfig(model="default", n_ctx=1024))
    largest = estimate(info, LocalConfig(model="default", n_ctx=4096))
    assert 180 <= small.host_mib <= 250 and 350 <= bigger.host_mib <= 430
    assert 850 <= largest.host_mib <= 1000
    assert bigger.kv_mib == 180  # 8 sequences x 1024 cells x 30 layers x 3 x 128 x 2 bytes


def test_model_files_are_found_or_not(tmp_path: Path) -> None:
    present = write_gguf(tmp_path / "m.gguf", [], [])
    assert model_file(str(present)) == present
    assert model_file(str(tmp_path / "missing.gguf")) is None
    assert model_file("hf://nobody/nothing/none.gguf") is None  # not in the cache
