"""The batching scheduler's port to a model: decode a batch, edit the KV cache, sample.

`batch_scheduler.Scheduler` decides what to decode and where each sequence's KV cells live;
a `Decoder` carries that out. `llama_decoder.LlamaDecoder` implements it over llama.cpp; the
unit tests use a fake that keeps cells in Python lists. Positions and ranges follow llama.cpp:
a range [p0, p1) with -1 for "from the start" (p0) or "to the end" (p1).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from llm_gateway.worker.engines.base import SamplingParams, TokenLogprob


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive tokens of one sequence in a batch, at positions pos, pos + 1, ...

    `logits`: the last token's logits are wanted (its batch index is where it ends).
    """

    seq_id: int
    pos: int
    tokens: Sequence[int]
    logits: bool


class Sampler(ABC):
    """One sequence's sampler chain (its seed, penalties and grammar state)."""

    @abstractmethod
    def sample(self, index: int) -> int:
        """Pick a token from the logits at batch index `index` of the last decode; accept it."""

    def attach(self, seq_id: int) -> bool:
        """The sequence now lives in `seq_id` (admitted, or moved there): a chain the decoder
        runs inside its decode follows it there. Whether it runs there; by default it never
        does (`sample` works alone)."""
        return False

    def close(self) -> None:  # noqa: B027 (optional)
        """Free what the chain holds (nothing by default)."""


class Decoder(ABC):
    """A model context with `n_batch` tokens per decode and one KV cache of sequence ids.

    A decode may go on after `decode` returns (on a GPU, llama.cpp only queues the work):
    `wait` blocks until it is done. In between, the caller touches nothing of the decoder's
    but `piece` and `is_eog` (no sampling, no cache edits): that is when it does the host work
    a decode does not need. `overlaps` says whether doing so gains anything.
    """

    n_batch: int
    overlaps: bool = False  # the decode runs on after `decode` returns, until `wait`

    @abstractmethod
    def decode(self, spans: Sequence[Span]) -> bool:
        """Evaluate one batch: True when done (or under way: see `wait`), False when the KV
        cache has no room for it (the cache is then left as it was). Raises on any other
        failure."""

    def wait(self) -> None:  # noqa: B027 (optional)
        """Block until the last decode is done (at once where `decode` is synchronous)."""

    @abstractmethod
    def copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Give sequence `dst` the cells `src` holds at positions [p0, p1)."""

    @abstractmethod
    def remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        """Drop the sequence's cells at positions [p0, p1)."""

    @abstractmethod
    def clear(self) -> None:
        """Empty the whole KV cache."""

    @abstractmethod
    def sampler(self, sampling: SamplingParams, grammar: str | None, seed: int,
                offload: bool = False) -> Sampler:
        """A new sampler chain; ValueError when the grammar does not parse. `offload`: the
        chain may run inside the decode (the sequence's own outputs only: no other reader of
        its logits), where the decoder can."""

    @abstractmethod
    def piece(self, token: int) -> bytes:
        """The token's text (UTF-8 bytes, possibly part of a character)."""

    @abstractmethod
    def is_eog(self, token: int) -> bool:
        """Whether the token ends generation (end of sequence, end of turn)."""

    def logits_ready(self) -> None:  # noqa: B027 (optional)
        """Called once after a decode, before samplers read the logits from several threads:
        finish any lazy work on the logits that is not safe to run concurrently."""

    def logprob(self, token: int, top: int, index: int) -> TokenLogprob:
        """The token's log-probability at batch index `index`, with the `top` likeliest."""
        raise NotImplementedError("this decoder gives no log-probabilities")

    def close(self) -> None:  # noqa: B027 (optional)
        """Free the batch buffers (the model and its context belong to the caller)."""
