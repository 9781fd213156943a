"""The worker's settings, one per command-line flag of `llm-gateway worker`."""

from __future__ import annotations

from dataclasses import dataclass

from llm_gateway.config.schema import ServerConfig
from llm_gateway.config.tracing import TracingConfig

CLIENT_BOUNDS = ServerConfig()  # the gateway's defaults of the bounds below


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    model: str  # a path, hf://owner/repo/file.gguf, or "default"
    host: str = "127.0.0.1"
    port: int = 8090
    served_name: str | None = None  # None: derived from the model source
    n_gpu_layers: int = -1  # all of them; the parent picks the GPU (CUDA_VISIBLE_DEVICES)
    n_ctx: int = 4096  # 0: the model's training context
    n_batch: int = 512
    n_threads: int | None = None
    flash_attn: str = "auto"  # auto (llama.cpp decides per device, as llama-server does), on, off
    chat_format: str | None = None  # a llama-cpp-python chat format name
    chat_template: str | None = None  # a Jinja2 template file
    tool_format: str = "auto"  # tool-call syntax: auto (from the template), hermes, llama3, mistral
    lora: str | None = None
    embeddings: bool = True  # a second context serves /v1/embeddings beside chat
    max_queue: int = 16
    # A client's bounds, as the gateway's server section (which spawned workers get): a body
    # past max_body_bytes is a 413; a head slower than header_timeout_seconds, a body piece
    # slower than body_timeout_seconds or a body slower on average than the rate, a 408.
    max_body_bytes: int = CLIENT_BOUNDS.max_body_bytes
    header_timeout_seconds: float = CLIENT_BOUNDS.header_timeout_seconds
    body_timeout_seconds: float = CLIENT_BOUNDS.body_timeout_seconds
    body_min_bytes_per_second: float = CLIENT_BOUNDS.body_min_bytes_per_second
    engine: str = "batching"  # "batching": sequences decoded together; "simple": one at a time
    parallel: int = 8  # sequences the batching engine decodes together
    kv_unified: bool = False  # batching: one KV pool shared by all sequences (else one each)
    # batching: threads sampling a step's sequences; None: up to 4 from 4 decode threads, else 1
    sample_threads: int | None = None
    # batching: sequence ids kept for cached prefixes besides the running ones; None: as many
    # as run with a unified cache (free), none with split streams (each costs n_ctx cells)
    cache_slots: int | None = None
    # batching: sampler chains run inside the decode (llama.cpp's backend sampling) where they
    # can: on a GPU, no logits cross to the host and no Python samples them
    backend_sampling: bool = False
    # batching: the host work of a step while the next decode runs: auto (on a GPU), on, off
    decode_overlap: str = "auto"
    warmup: bool = True  # a short decode at load, so the first request does not pay for it
    seed: int | None = None  # for requests that bring none; None: random per request
    log_level: str = "info"
    tracing: TracingConfig | None = None  # --otlp-*: spans for traced requests
