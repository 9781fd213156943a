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

from llm_gateway.worker.engines.base import ChoiceEnd, Finished, Job, Piece
from llm_gateway.worker.engines.decoder import Decoder, Sampler
from llm_gateway.worker.engines.text import TextStream

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

    def accept(self, decoder: Decoder, index: int, out: Out, token: int | None = None) -> None:
        """Take the token sampled from the logits at batch position `index` (sampled here
        when not given); queue the events in `out`."""
        job = self.job
        if job.max_tokens is not None and self.generated >= job.max_tokens:
            self.finish = "length"  # max_tokens 0: the prompt was evaluated, nothing more
            return
        if token is None:
            token = self.sampler.sample(index)
        if decoder.is_eog(token):
            self.finish = "stop"
            return
        logprob = decoder.logprob(token, job.top_logprobs, index) if job.logprobs else None
        self.generated += 1
        text = self.text.push(decoder.piece(token))
        out.append((self.work, Piece(text, token, logprob, self.index)))
        if self.text.stopped:
            self.finish = "stop"
        elif len(self.prompt) + self.generated >= self.n_ctx:
            self.finish = "length"  # prompt and completion together fill the context
        elif job.max_tokens is not None and self.generated >= job.max_tokens:
            self.finish = "length"  # no need to evaluate a token nothing will follow
        else:
            self.next_token = token
            self.tokens.append(token)

    def end(self, out: Out, reason: str | None = None) -> None:
        """Queue the held-back text and the end events; free the sampler."""
        finish = reason or self.finish or "stop"
        self.finish = finish
        rest = self.text.flush()
        if rest and finish != "cancelled":
            out.append((self.work, Piece(rest, None, None, self.index)))
        self.sampler.close()
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
