"""The Engine seam: what the worker's HTTP layer needs from whatever runs the model.

`simple.SimpleEngine` runs one sequence at a time; `batching.BatchingEngine` decodes several
together (continuous batching). The HTTP code is the same for both. Everything here is plain
data, free of llama.cpp types, so the HTTP layer can be tested against any engine.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class EngineError(Exception):
    """Base of the errors an engine raises on purpose."""


class QueueFull(EngineError):
    """Too many jobs are waiting; the caller should retry later."""


class EngineClosed(EngineError):
    """The engine is shutting down (or failed to load) and takes no more work."""


@dataclass(frozen=True, slots=True)
class SamplingParams:
    # OpenAI's defaults: plain sampling at temperature 1, no truncation of the distribution.
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0  # 0: off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0  # llama.cpp's multiplicative penalty; 1: off
    logit_bias: Mapping[int, float] = field(default_factory=dict)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Job:
    """One generation request, already rendered to a prompt."""

    prompt: str | list[int]  # text is tokenized by the engine; tokens are used as they are
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: Sequence[str] = ()  # generation ends before the first of these; it is not returned
    max_tokens: int | None = None  # None: until end of sequence or the context is full
    grammar: str | None = None  # GBNF text whose start rule is `root`
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None  # given: reproducible (no prompt-cache reuse); None: engine's pick
    # Choices: the prompt is evaluated once and each choice i samples with seed + i; more
    # than one only on engines whose `max_choices` allows it.
    n: int = 1
    id: str = field(default_factory=new_job_id)
    # When the engine began its prompt (time.time_ns(), set from the engine's thread): before
    # it, the job waited in the queue (the worker's spans, worker/tracing.py). 0: not yet.
    began_ns: int = 0


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Piece:
    """One generated token, with the text it releases.

    `text` can be empty (the token may begin a stop string, or ends inside a UTF-8 character)
    or hold text held back by earlier tokens. `token_id` is None for the text flushed at the
    end, which belongs to no new token.
    """

    text: str
    token_id: int | None
    logprob: TokenLogprob | None = None
    index: int = 0  # the choice it belongs to (jobs with n > 1)


@dataclass(frozen=True, slots=True)
class ChoiceEnd:
    """One choice of a job with n > 1 ended; `Finished` follows once all have."""

    index: int
    finish_reason: str  # "stop" | "length" | "cancelled"
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every job.

    With n > 1 choices: the prompt counted once, the tokens of every choice summed, and
    "cancelled" when the job was, else choice 0's reason (each choice's is in its
    `ChoiceEnd`).
    """

    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose KV state was reused, not recomputed


Event = Piece | ChoiceEnd | Finished


class EventStream(ABC):
    """A job's events, ending with `Finished`. Closing it early cancels the job."""

    def __aiter__(self) -> EventStream:
        return self

    @abstractmethod
    async def __anext__(self) -> Event: ...

    def ready(self) -> list[Event]:
        """The events already waiting, taken without waiting (in order; may be none).

        Lets a reader that fell behind write them at once (one socket write, not one per
        token). An error waiting among them is left for the next `__anext__`.
        """
        return []

    @abstractmethod
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineStats:
    queue_depth: int
    active: int
    max_queue: int
    prompt_tokens_total: int
    generated_tokens_total: int
    kv_cache_usage: float | None  # fraction of the KV cache in use, when known
    warmup_seconds: float = 0.0  # the decode done at load, before the first request
    # Batching engines only (the defaults fit a one-at-a-time engine):
    parallel: int = 1  # sequences that can be decoded together
    cached_sequences: int = 0  # finished sequences kept for prefix reuse
    tokens_per_second: float | None = None  # generated, over the last few seconds
    steps_total: int = 0  # decode steps (one llama_decode each)
    step_seconds_total: float = 0.0  # wall time of those steps
    decode_seconds_total: float = 0.0  # the part of it spent in llama_decode and waiting on it
    overlap_seconds_total: float = 0.0  # the part of it doing host work while a decode ran
    split_steps_total: int = 0  # steps llama.cpp had to decode in more than one pass
    compactions_total: int = 0  # times running sequences were moved onto consecutive ids
    backend_sampled_total: int = 0  # sequences sampled inside the decode (--backend-sampling)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the request layer needs to know about the loaded model."""

    n_ctx: int
    n_vocab: int
    n_embd: int
    max_embedding_tokens: int  # the longest input one embedding can take
    embedding: bool  # whether `embed` is available
    metadata: Mapping[str, str]  # GGUF key/values (tokenizer.chat_template, ...)
    bos_token: str
    eos_token: str
    bos_id: int
    # (text, add_special, parse_special) -> tokens; safe to call from any thread
    tokenize: Callable[[str, bool, bool], list[int]]
    detokenize: Callable[[Sequence[int]], bytes]


class Engine(ABC):
    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """Available once `start` has returned."""

    @abstractmethod
    async def start(self) -> None:
        """Load the model; returns when the engine can take jobs, raises if loading failed."""

    @property
    def max_choices(self) -> int:
        """The largest `Job.n` this engine takes (one choice per job unless it says more)."""
        return 1

    @abstractmethod
    async def submit(self, job: Job) -> EventStream:
        """Queue a job. Raises `QueueFull` at once rather than waiting for room."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop a job (waiting or running) as soon as possible; unknown ids are ignored."""

    @abstractmethod
    def stats(self) -> EngineStats: ...

    @abstractmethod
    async def embed(self, inputs: Sequence[Sequence[int]]) -> tuple[list[Any], int]:
        """Unit-length float32 vectors for tokenized inputs, and the tokens they took."""

    async def run_chat_handler(self, request: dict) -> dict:
        """Run the model library's own chat handler (function calling) on a whole request.

        Optional: engines that cannot offer it leave this, and tools stay unsupported.
        """
        raise NotImplementedError

    @abstractmethod
    async def close(self) -> None:
        """Cancel what runs, refuse what waits, free the model."""
