"""Embeddings on a llama.cpp context of their own, made on the chat context's loaded model.

llama.cpp lets several contexts share one model, on threads of their own (its own
thread-safety test, test-thread-safety.cpp, decodes on several contexts of one model at
once), so this context costs its KV cells and buffers, never the weights again, and chat
keeps its context, its running sequences and its cached prefixes while embeddings are
computed.

How a vector is pooled depends on the model:

- a model with a pooling layer of its own (BERT-style embedding models; GGUF
  `<arch>.pooling_type`): llama.cpp pools, and an input must fit one micro-batch, so the
  context's batch holds `max_tokens`;
- a causal LM (no pooling: SmolLM2, Llama, Qwen, ...): the mean of the last hidden state over
  the input's tokens, summed here chunk by chunk. A token's state depends only on the tokens
  before it (kept in the KV cache between chunks), so small chunks give the same vectors and
  keep the output buffer small: llama.cpp sizes it for the logits of every output token
  (n_vocab floats each, 49152 for SmolLM2), wanted or not.

Each input is decoded alone, from an empty cache, in the same chunks whatever came with it:
llama.cpp's sums depend on the shape of a batch (several inputs decoded together drift by up
to ~5e-3 from their vectors alone with SmolLM2), and an input's vector should not depend on
its neighbours (the gateway may cache or coalesce embeddings). Vectors come back unit-length
(float32), as OpenAI's do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals

from llm_gateway.worker.engines.base import EngineError
from llm_gateway.worker.engines.llama_run import apply_lora

CHUNK_TOKENS = 64  # tokens per decode for causal LMs: the output buffer holds this many rows


class EmbeddingCancelled(EngineError):
    """The caller went away; the request was dropped between two inputs."""


class EmbeddingContext:
    """A context with embeddings on, beside `llama`'s own. Used by one thread at a time."""

    def __init__(self, llama: llama_cpp.Llama, max_tokens: int,
                 chunk_tokens: int = CHUNK_TOKENS) -> None:
        if max_tokens < 1 or chunk_tokens < 1:
            raise ValueError("max_tokens and chunk_tokens must be 1 or more")
        self.max_tokens = max_tokens  # the longest input
        self.n_embd = llama.n_embd()
        ctx = self._open(llama, min(chunk_tokens, max_tokens))
        # A causal LM's context reports NONE (its GGUF names no pooling); UNSPECIFIED too.
        self.pooled = int(ctx.pooling_type()) > llama_cpp.LLAMA_POOLING_TYPE_NONE
        if self.pooled and max_tokens > chunk_tokens:
            ctx.close()  # pooled by llama.cpp: a whole input must fit one micro-batch
            ctx = self._open(llama, max_tokens)
        self._ctx = ctx
        self._batch_size = int(ctx.params.n_batch)
        self._batch = llama_cpp.llama_batch_init(self._batch_size, 0, 1)
        self._closed = False
        self._memory = llama_cpp.llama_get_memory(ctx.ctx)  # None: the model keeps no state

    def _open(self, llama: llama_cpp.Llama, batch: int) -> _internals.LlamaContext:
        # The chat context's settings (threads, flash attention, KV types, RoPE), resized.
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.n_ctx = self.max_tokens
        params.n_batch = params.n_ubatch = batch
        params.n_seq_max = 1
        params.kv_unified = False
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the model's own
        ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        try:
            apply_lora(llama, ctx)
        except BaseException:
            ctx.close()
            raise
        return ctx

    def embed(self, inputs: Sequence[Sequence[int]],
              cancelled: Callable[[], bool] = lambda: False) -> list[np.ndarray]:
        """One unit-length vector per input, in order; inputs of 1..max_tokens tokens."""
        for tokens in inputs:
            if not 0 < len(tokens) <= self.max_tokens:
                raise ValueError(f"an input of {len(tokens)} tokens; 1 to "
                                 f"{self.max_tokens} fit")
        vectors: list[np.ndarray] = []
        try:
            for tokens in inputs:
                if cancelled():
                    raise EmbeddingCancelled("the request was cancelled")
                self._clear()
                vectors.append(self._pooled(tokens) if self.pooled else self._mean(tokens))
        finally:
            self._clear()
        return vectors

    def _pooled(self, tokens: Sequence[int]) -> np.ndarray:
        self._decode(tokens, 0)
        pointer = llama_cpp.llama_get_embeddings_seq(self._ctx.ctx, 0)
        if not pointer:
            raise RuntimeError("llama.cpp returned no pooled embedding")
        return _unit(np.ctypeslib.as_array(pointer, shape=(self.n_embd,)))

    def _mean(self, tokens: Sequence[int]) -> np.ndarray:
        total = np.zeros(self.n_embd, dtype=np.float64)
        for start in range(0, len(tokens), self._batch_size):
            chunk = tokens[start:start + self._batch_size]
            self._decode(chunk, start)
            pointer = llama_cpp.llama_get_embeddings(self._ctx.ctx)
            if not pointer:
                raise RuntimeError("llama.cpp returned no embeddings")
            total += np.ctypeslib.as_array(pointer, shape=(len(chunk), self.n_embd)).sum(
                axis=0, dtype=np.float64)
        return _unit(total / len(tokens))

    def _decode(self, tokens: Sequence[int], start: int) -> None:
        """Decode tokens at positions start, start + 1, ...; every one an output."""
        batch = self._batch
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True
        batch.n_tokens = len(tokens)
        rc = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} computing embeddings")

    def _clear(self) -> None:
        if self._memory is not None:
            llama_cpp.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
            self._ctx.close()


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)

