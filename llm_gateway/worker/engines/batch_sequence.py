"""One running sequence of the batching engine: its prompt, KV position, sampler and text.

A sequence lives in one KV-cache sequence id (`seq_id`) from admission to its end. It first
feeds its prompt (in chunks, `n_past` counting what the cache holds), then produces one token
per step. Everything here runs on the engine thread; the only thing read from elsewhere is
the work's `cancelled` flag (a plain bool).

A job with n > 1 choices runs as n sequences of one `Choices` group, sharing the job's work:
the first (the leader) feeds the prompt; the others wait, holding an id but no cells, until
the scheduler forks them from the leader once the prompt is in the cache (`waiting_on`).
Each choice ends on its own (`ChoiceEnd`); the group's `Finished` follows the last.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.worker.engines.base import ChoiceEnd, Finished, Job, Piece, TokenLogprob
from llm_gateway.worker.engines.decoder import Decoder, Sampler
from llm_gateway.worker.engines.text import TextStream

# A token a sequence took, its text still to be shown: (sequence, token, log-probability).
# A plain tuple: one is made per generated token.
Taken = tuple["Sequence", int, TokenLogprob | None]

# Events of one step, as (work, event) pairs: the engine hands them to the event loop in one
# call, so a step with 8 sequences wakes the loop once, not 8 times.
Out = list[tuple[Any, Any]]


class Choices:
    """The sequences of one job with n > 1 choices, in choice order (the leader first)."""

    __slots__ = ("members", "open")

    def __init__(self) -> None:
        self.members: list[Sequence] = []
        self.open = 0  # members not ended yet

    def add(self, seq: Sequence) -> None:
        self.members.append(seq)
        self.open += 1


class Sequence:
    __slots__ = ("cached", "finish", "generated", "group", "index", "job", "n_ctx", "n_past",
                 "next_token", "prompt", "sampler", "seq_id", "text", "tokens", "waiting_on",
                 "work")

    def __init__(self, job: Job, work: Any, prompt: list[int], seq_id: int, cached: int,
                 sampler: Sampler, n_ctx: int, index: int = 0) -> None:
        self.job = job
        self.work = work  # the queued unit: `.cancelled`, `.send(event)`
        self.prompt = prompt
        self.tokens = list(prompt)  # prompt + generated: what the cache holds up to n_past
        self.seq_id = seq_id
        self.cached = cached  # prompt tokens copied from another sequence's cache
        self.n_past = cached  # positions [0, n_past) are in the KV cache
        self.sampler = sampler
        self.text = TextStream(job.stop)
        self.generated = 0
        self.next_token: int | None = None  # sampled, to be decoded at position n_past
        self.finish: str | None = None  # set once the sequence is done
        self.n_ctx = n_ctx
        self.index = index  # its choice
        self.group: Choices | None = None  # set when the job has n > 1 choices
        self.waiting_on: Sequence | None = None  # the leader whose prompt it will copy

    @property
    def prefilling(self) -> bool:
        return self.waiting_on is None and self.n_past < len(self.prompt)

    def fork(self, leader: Sequence) -> None:
        """It now holds the leader's evaluated prompt (copied by the scheduler)."""
        self.waiting_on = None
        self.n_past = self.cached = leader.n_past

    def prompt_chunk(self, budget: int) -> list[int]:
        """The next at most `budget` prompt tokens to feed."""
        return self.prompt[self.n_past:self.n_past + budget]

    def wants_token(self) -> bool:
        """Whether to sample after this step; False (finished "length") at max_tokens."""
        job = self.job
        if job.max_tokens is not None and self.generated >= job.max_tokens:
            self.finish = "length"  # max_tokens 0: the prompt was evaluated, nothing more
            return False
        return True

    def take(self, decoder: Decoder, token: int, index: int) -> Taken | None:
        """Take the token sampled from the logits at batch position `index`: what the next
        decode needs (whether the sequence goes on, and with which token). Its text comes
        later (`show` what this returns), maybe while that decode runs; None for an
        end-of-generation token, which has none. A log-probability is read now: the next
        decode overwrites the logits."""
        job = self.job
        if decoder.is_eog(token):
            self.finish = "stop"
            return None
        logprob = decoder.logprob(token, job.top_logprobs, index) if job.logprobs else None
        self.generated += 1
        if len(self.prompt) + self.generated >= self.n_ctx:
            self.finish = "length"  # prompt and completion together fill the context
        elif job.max_tokens is not None and self.generated >= job.max_tokens:
            self.finish = "length"  # no need to evaluate a token nothing will follow
        else:
            self.next_token = token
            self.tokens.append(token)
        return self, token, logprob

    def show(self, decoder: Decoder, token: int, logprob: TokenLogprob | None,
             out: Out) -> bool:
        """Queue a taken token's text; whether a stop string in it ended the sequence
        ("stop", before "length"). If the token is already being decoded, that decode's
        output goes unused."""
        text = self.text.push(decoder.piece(token))
        out.append((self.work, Piece(text, token, logprob, self.index)))
        if self.text.stopped and self.finish in (None, "length"):
            self.finish = "stop"
            self.next_token = None
            return True
        return False

    def end(self, reason: str | None = None) -> None:
        """It runs no more: settle its finish reason, free its sampler (its events come
        after its last text: `announce_end`)."""
        self.finish = reason or self.finish or "stop"
        self.sampler.close()

    def announce_end(self, out: Out) -> None:
        """Queue the held-back text and the end events."""
        finish = self.finish or "stop"
        rest = self.text.flush()
        if rest and finish != "cancelled":
            out.append((self.work, Piece(rest, None, None, self.index)))
        group = self.group
        if group is None:
            out.append((self.work, Finished(finish, len(self.prompt), self.generated,
                                            self.cached)))
            return
        out.append((self.work, ChoiceEnd(self.index, finish, self.generated)))
        group.open -= 1
        if group.open:
            return
        members = group.members
        ended = [m.finish for m in members]
        overall = "cancelled" if "cancelled" in ended else members[0].finish or finish
        # The prompt was evaluated once (by the leader): counted once, cached as it found it.
        out.append((self.work, Finished(overall, len(self.prompt),
                                        sum(m.generated for m in members),
                                        members[0].cached)))

    def cached_tokens(self) -> list[int]:
        """The tokens whose KV state this sequence's cache holds (positions < n_past)."""
        return self.tokens[:self.n_past]
