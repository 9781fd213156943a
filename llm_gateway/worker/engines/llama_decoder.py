"""The batching engine's `Decoder` over llama.cpp: the only module besides `llama_run` that
calls llama.cpp's C API or reaches into llama-cpp-python's private attributes."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
from llama_cpp import _internals

from llm_gateway.worker.engines import llama_run
from llm_gateway.worker.engines.base import SamplingParams, TokenLogprob
from llm_gateway.worker.engines.decoder import Decoder, Sampler, Span

_KEEP_STATE_BYTES = 64 << 20  # copy buffers up to this size are kept for the next copy
_KV_FULL = 1  # llama_decode: no KV slot for the batch (the cache is left as it was)


def max_sequences() -> int:
    """The most sequence ids a llama.cpp context takes."""
    return int(llama_cpp.llama_max_parallel_sequences())


class LlamaSampler(Sampler):
    """A chain sampled on the host after the decode, or, attached to its sequence id
    (`offload`), by llama.cpp inside the decode: its graph then ends with this chain's ops
    for that sequence's outputs, and `sample` reads the token it picked (llama.cpp's
    `llama_sampler_sample` does either). Attaching or detaching one makes llama.cpp rebuild
    its worst-case graph at the next decode (a few ms): when a sequence starts, ends or is
    moved, not every step."""

    def __init__(self, chain: _internals.LlamaSampler, ctx: _internals.LlamaContext,
                 offload: bool) -> None:
        self._chain = chain
        self._ctx = ctx
        self._offload = offload
        self._seq_id: int | None = None  # where it is attached

    def sample(self, index: int) -> int:
        return self._chain.sample(self._ctx, index)

    def attach(self, seq_id: int) -> bool:
        if not self._offload:
            return False
        if seq_id == self._seq_id:
            return True
        if self._seq_id is not None:
            # Moved: llama.cpp prepares a chain for its graph once (asserting otherwise), so
            # the sequence goes on with a copy: same settings, same state (draws, penalties).
            old = self._chain.sampler
            fresh = llama_cpp.llama_sampler_clone(old)
            if not fresh:
                raise MemoryError("could not copy a sampler chain")
            self._detach()
            self._chain.sampler = fresh  # (build_sampler adds no Python-side samplers)
            llama_cpp.llama_sampler_free(old)
        # False: llama.cpp cannot run this chain in the graph (it said why in its log); it is
        # then sampled on the host, as without offload.
        if llama_cpp.llama_set_sampler(self._ctx.ctx, seq_id, self._chain.sampler):
            self._seq_id = seq_id
        return self._seq_id is not None

    def _detach(self) -> None:
        if self._seq_id is not None:
            llama_cpp.llama_set_sampler(self._ctx.ctx, self._seq_id, None)
            self._seq_id = None

    def close(self) -> None:
        self._detach()  # before the chain is freed: the context must not keep a pointer to it
        self._chain.close()


class LlamaDecoder(Decoder):
    """Decodes on the Llama's context, which must have been made for several sequences
    (`batched`); one llama.cpp batch of `n_batch` tokens is kept and refilled every step."""

    def __init__(self, llama: llama_cpp.Llama, copy_occupied: bool = False,
                 backend_sampling: bool = False, overlaps: bool = False) -> None:
        self.llama = llama
        self.backend_sampling = backend_sampling  # chains offered to run inside the decode
        self.overlaps = overlaps
        # Split KV cache in host memory: copies between ids move the occupied cells only.
        self._copy_occupied = copy_occupied
        self._state = (ctypes.c_uint8 * 0)()  # reused buffer for those copies
        self.vocab = llama_run.Vocab(llama)
        self.n_batch = llama.n_batch
        self._ctx = llama._ctx.ctx
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        # One sequence id per token: each token belongs to exactly one sequence (prefixes
        # are shared by copying cells, not by tagging tokens with several ids).
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._closed = False

    @classmethod
    def batched(cls, llama: llama_cpp.Llama, n_seq_max: int, unified: bool,
                backend_sampling: bool = False,
                overlap: bool | None = None) -> tuple[LlamaDecoder, int]:
        """Replace the Llama's context by one with `n_seq_max` sequence ids; the decoder on it
        and the cells each sequence may fill (n_ctx per sequence).

        Same parameters otherwise. Unified: the Llama's n_ctx cells are shared by all
        sequences; split: each sequence gets that many. `overlap`: whether the scheduler
        does its host work while a decode runs; None: where the model is on a GPU (on the
        CPU llama_decode returns when it is done, so there is nothing to overlap).
        """
        n_ctx = llama.n_ctx()
        n_seq_max = max(int(llama.context_params.n_seq_max), n_seq_max)
        sizes = {} if unified else {"n_ctx": n_ctx * n_seq_max}
        llama_run.new_context(llama, n_seq_max=n_seq_max, kv_unified=unified, **sizes)
        # With layers on a GPU, llama.cpp's whole-stream copy stays on the device, where a
        # state copy would cross the bus twice; on the CPU the state copy is far cheaper.
        on_host = (int(llama.model_params.n_gpu_layers) == 0
                   or not llama_cpp.llama_supports_gpu_offload())
        decoder = cls(llama, copy_occupied=not unified and on_host,
                      backend_sampling=backend_sampling,
                      overlaps=not on_host if overlap is None else overlap)
        return decoder, min(n_ctx, llama_cpp.llama_n_ctx_seq(llama._ctx.ctx))

    def decode(self, spans: Sequence[Span]) -> bool:
        batch = self._batch
        tokens, positions, seq_ids = batch.token, batch.pos, batch.seq_id
        n_seq_id, logits = batch.n_seq_id, batch.logits
        i = 0
        for span in spans:
            pos, seq_id = span.pos, span.seq_id
            for token in span.tokens:
                tokens[i] = token
                positions[i] = pos
                n_seq_id[i] = 1
                seq_ids[i][0] = seq_id
                logits[i] = False
                pos += 1
                i += 1
            if span.logits:
                logits[i - 1] = True
        batch.n_tokens = i
        # On a GPU this only queues the work (llama.cpp waits when an output is first read,
        # or in `wait`); on the CPU it returns when the decode is done.
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc == 0:
            return True
        llama_cpp.llama_synchronize(self._ctx)  # nothing may be under way when the cache changes
        if rc == _KV_FULL:
            return False
        raise RuntimeError(f"llama_decode returned {rc}")

    def wait(self) -> None:
        llama_cpp.llama_synchronize(self._ctx)

    def logits_ready(self) -> None:
        # llama.cpp reorders output rows lazily on the first read of the logits; reading
        # them here, on one thread, leaves nothing for the sampling threads to race on.
        llama_cpp.llama_get_logits(self._ctx)

    def copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        if not self._copy_occupied:
            # One stream: the cells are only tagged with dst too. Split streams on a GPU:
            # whole streams are copied on the device at the next decode, in call order.
            llama_cpp.llama_memory_seq_cp(self._mem, src, dst, p0, p1)
            return
        self._copy_cells(src, dst)
        if p0 > 0:
            self.remove(dst, -1, p0)
        if p1 >= 0:
            self.remove(dst, p1, -1)

    def _copy_cells(self, src: int, dst: int) -> None:
        """Copy the cells `src` occupies into `dst`'s stream (emptied first), now.

        llama.cpp's `seq_cp` between streams copies whole streams, n_ctx cells each, at the
        next decode (and then re-reserves the worst-case graph): about 12 ms at 4,096 cells
        per sequence on the CPU here, whatever the sequence holds. Its per-sequence state
        (`llama_state_seq_*`) holds only the occupied cells: a prefix of a few hundred
        tokens is a few MB, copied in about a millisecond, and the cost no longer grows
        with n_ctx.
        """
        ctx = self._ctx
        self.remove(dst, -1, -1)  # (a source with no cells writes nothing into dst's stream)
        size = llama_cpp.llama_state_seq_get_size_ext(ctx, src, 0)
        buffer = self._state
        if len(buffer) < size:
            buffer = (ctypes.c_uint8 * size)()
            if size <= _KEEP_STATE_BYTES:  # a long prefix's buffer is not held for good
                self._state = buffer
        written = llama_cpp.llama_state_seq_get_data_ext(ctx, buffer, size, src, 0)
        if written == 0 or llama_cpp.llama_state_seq_set_data_ext(
                ctx, buffer, written, dst, 0) != written:
            raise RuntimeError(f"could not copy the KV cells of sequence {src} to {dst}")

    def remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, seq_id, p0, p1)

    def clear(self) -> None:
        # Cells only: zeroing the data too took 0.7-3 s for a 1 GB cache here, and no cell
        # is read before it is written again.
        llama_cpp.llama_memory_clear(self._mem, False)

    def sampler(self, sampling: SamplingParams, grammar: str | None, seed: int,
                offload: bool = False) -> Sampler:
        chain = llama_run.build_sampler(self.llama, sampling, grammar, seed)
        # A grammar cannot run in the graph; a chain that would run there only in part gains
        # nothing, so it stays on the host whole.
        offload = offload and self.backend_sampling and grammar is None
        return LlamaSampler(chain, self.llama._ctx, offload)

    def piece(self, token: int) -> bytes:
        return self.vocab.piece(token)

    def is_eog(self, token: int) -> bool:
        return self.vocab.is_eog(token)

    def logprob(self, token: int, top: int, index: int) -> TokenLogprob:
        return llama_run.token_logprob(self.llama, self.vocab, token, top, index)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
