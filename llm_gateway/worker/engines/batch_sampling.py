"""Sampling a step's sequences on several threads.

After each decode every generating sequence samples its next token from its own row of
logits with its own sampler chain. For a large vocabulary that is a few hundred microseconds
of C per sequence (copying the row, penalties, top-k/top-p, the draw), and at 32-64 sequences
it was half of a GPU step's time, with the GPU idle meanwhile. llama-cpp-python calls
llama.cpp through ctypes, which releases the GIL for the call, so the chains of different
sequences run truly in parallel: each reads its own row and touches only its own state.

The one shared write is llama.cpp's lazy reordering of output rows (`output_reorder`, done
by the first read of the logits after a decode); `Decoder.logits_ready` does it on the
calling thread before the threads start.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from llm_gateway.worker.engines.decoder import Sampler

# Below this many sequences per thread, handing work to a thread costs more than it saves
# (a pick over a 49k vocabulary takes 0.15-0.25 ms in C; a hand-off tens of microseconds).
MIN_PER_THREAD = 4


def default_sample_threads(decode_threads: int) -> int:
    """Sampling threads when none are configured: the decode's threads are idle while a
    step samples, so up to 4 of them; but on fewer than 4 cores none beside the engine's own
    (measured on 2 cores: no gain, llama.cpp's threads leave nothing idle to use)."""
    return min(4, decode_threads) if decode_threads >= 4 else 1


class StepSampler:
    """Samples (sampler, logits index) pairs, in parallel when there are enough of them."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._pool = (ThreadPoolExecutor(self.threads - 1, thread_name_prefix="llama-sample")
                      if self.threads > 1 else None)

    def sample(self, picks: Sequence[tuple[Sampler, int]]) -> list[int]:
        """Each pair's sampled (and accepted) token, in the order given."""
        parts = min(self.threads, len(picks) // MIN_PER_THREAD)
        if self._pool is None or parts < 2:
            return [sampler.sample(index) for sampler, index in picks]
        size = -(-len(picks) // parts)  # ceil: `parts` slices, the last one shorter
        slices = [picks[i:i + size] for i in range(0, len(picks), size)]
        futures = [self._pool.submit(_sample_all, part) for part in slices[1:]]
        tokens = _sample_all(slices[0])  # this thread takes the first slice itself
        for future in futures:
            tokens.extend(future.result())
        return tokens

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _sample_all(picks: Sequence[tuple[Sampler, int]]) -> list[int]:
    return [sampler.sample(index) for sampler, index in picks]
