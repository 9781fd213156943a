"""A `Decoder` without a model, for the batching scheduler's unit tests.

The KV cache is a pool of `capacity` cells, as llama.cpp's unified cache is: each cell holds
one (position, token) for a set of sequence ids, so a copy tags cells and a remove untags
them; a cell no sequence holds is free. It checks what llama.cpp checks (a batch fits
`n_batch`; each sequence's tokens continue right after the last position it holds) and, more
strictly, that a copy never lands on cells the target already holds. A decode without room
for every token changes nothing and reports the cache full.

Sampling is scripted: the token a sequence samples is `rule(the tokens its cells hold)`, so
a sequence whose cells were set up wrong samples something else (`seeded(tokens, seed)`
instead, when given: choices of one request then differ by their samplers' seeds). Every
call is recorded in `calls` (sampler builds, decodes, copies, removes, clears, samples).

With `overlaps`, a decode stays under way until `wait`, as on a GPU: meanwhile only `piece`
and `is_eog` may be called (anything else asserts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_gateway.worker.engines.base import SamplingParams, TokenLogprob
from llm_gateway.worker.engines.decoder import Decoder, Sampler, Span

EOG = 2


def counting(context: list[int]) -> int:
    """The default rule: 100 + how many tokens the sequence holds."""
    return 100 + len(context)


@dataclass
class Cell:
    pos: int
    token: int
    seqs: set[int] = field(default_factory=set)


class FakeSampler(Sampler):
    """Samples by the decoder's rule. Offloaded (`backend_sampling`), it stands for a chain
    run inside the decode: it may only read the outputs of the sequence id it is attached
    to, as llama.cpp's backend sampling picks tokens per attached sequence id."""

    def __init__(self, decoder: FakeDecoder, seed: int, offload: bool = False) -> None:
        self.decoder = decoder
        self.seed = seed
        self.offload = offload
        self.closed = False

    def attach(self, seq_id: int) -> bool:
        assert not self.closed, "attaching a closed sampler"
        self.decoder.idle("attaching a sampler")
        if not self.offload:
            return False
        attached = self.decoder.attached
        for held in [k for k, v in attached.items() if v is self]:
            del attached[held]
        assert seq_id not in attached, f"sequence id {seq_id} has a chain already"
        attached[seq_id] = self
        self.decoder.calls.append(("attach", self.seed, seq_id))
        return True

    def sample(self, index: int) -> int:
        assert not self.closed, "sampling with a closed sampler"
        self.decoder.idle("sampling")
        decoder = self.decoder
        assert index in decoder.logits, f"no logits at batch index {index}"
        seq_id = decoder.logits[index]
        if self.offload:
            assert decoder.attached.get(seq_id) is self, \
                f"an offloaded chain read sequence {seq_id}'s output, not its own"
        context = decoder.tokens(seq_id)
        token = decoder.rule(context) if decoder.seeded is None else \
            decoder.seeded(context, self.seed)
        decoder.calls.append(("sample", seq_id, token))
        return token

    def close(self) -> None:
        assert not self.closed, "a sampler closed twice"
        self.decoder.idle("freeing a sampler")
        self.closed = True
        attached = self.decoder.attached
        for held in [k for k, v in attached.items() if v is self]:
            del attached[held]  # detached before it is freed


class FakeDecoder(Decoder):
    def __init__(self, n_batch: int = 64, capacity: int = 1000,
                 rule: Callable[[list[int]], int] = counting,
                 seeded: Callable[[list[int], int], int] | None = None,
                 backend_sampling: bool = False, overlaps: bool = False) -> None:
        self.n_batch = n_batch
        self.overlaps = overlaps
        self.in_flight = False  # a decode is under way (overlaps: until wait)
        self.backend_sampling = backend_sampling
        self.attached: dict[int, FakeSampler] = {}  # sequence id -> its offloaded chain
        self.capacity = capacity
        self.rule = rule
        self.seeded = seeded
        self.cells: list[Cell] = []
        self.calls: list[tuple] = []
        self.samplers: list[FakeSampler] = []
        self.logits: dict[int, int] = {}  # batch index -> sequence id, of the last decode
        self.fail: str | None = None  # set: the next decodes raise RuntimeError(fail)
        self.closed = False

    # -- what the tests read ----------------------------------------------------------------

    def tokens(self, seq_id: int) -> list[int]:
        """The tokens the sequence's cells hold, by position (which must run 0, 1, ...)."""
        held = sorted((c.pos, c.token) for c in self.cells if seq_id in c.seqs)
        assert [pos for pos, _ in held] == list(range(len(held))), f"holes in {seq_id}"
        return [token for _, token in held]

    def used(self) -> int:
        return len(self.cells)

    def held_ids(self) -> set[int]:
        return {s for c in self.cells for s in c.seqs}

    def log(self, *kinds: str) -> list[tuple]:
        """The recorded calls of these kinds, in order: ("decode", spans, "ok"|"full"|"error")
        with spans as (seq_id, pos, token count, logits); ("copy", src, dst, p0, p1);
        ("remove", seq_id, p0, p1); ("clear",); ("sampler", seed); ("sample", seq_id, token);
        ("attach", seed, seq_id)."""
        return [call for call in self.calls if call[0] in kinds]

    # -- the Decoder ------------------------------------------------------------------------

    def idle(self, what: str) -> None:
        assert not self.in_flight, f"{what} while a decode is under way"

    def wait(self) -> None:
        self.in_flight = False

    def decode(self, spans: Sequence[Span]) -> bool:
        self.idle("a decode")
        shape = [(s.seq_id, s.pos, len(s.tokens), s.logits) for s in spans]
        count = sum(len(s.tokens) for s in spans)
        assert 0 < count <= self.n_batch, f"a batch of {count} tokens"
        for span in spans:
            assert span.tokens, "an empty span"
            held = [c.pos for c in self.cells if span.seq_id in c.seqs]
            assert span.pos == max(held, default=-1) + 1, \
                f"sequence {span.seq_id} continues at {span.pos}, holds up to {max(held)}"
        if self.fail is not None:
            self.calls.append(("decode", shape, "error"))
            raise RuntimeError(self.fail)
        if len(self.cells) + count > self.capacity:
            self.calls.append(("decode", shape, "full"))
            return False
        self.calls.append(("decode", shape, "ok"))
        self.in_flight = self.overlaps
        self.logits = {}
        index = 0
        for span in spans:
            for k, token in enumerate(span.tokens):
                self.cells.append(Cell(span.pos + k, token, {span.seq_id}))
            index += len(span.tokens)
            if span.logits:
                self.logits[index - 1] = span.seq_id
        return True

    def copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        self.idle("a copy")
        self.calls.append(("copy", src, dst, p0, p1))
        for cell in self.cells:
            if self._within(cell, p0, p1):
                assert dst not in cell.seqs or src == dst, f"copy onto {dst}'s own cells"
                if src in cell.seqs:
                    cell.seqs.add(dst)

    def remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        self.idle("a remove")
        self.calls.append(("remove", seq_id, p0, p1))
        for cell in self.cells:
            if self._within(cell, p0, p1):
                cell.seqs.discard(seq_id)
        self.cells = [c for c in self.cells if c.seqs]

    def clear(self) -> None:
        self.idle("a clear")
        self.calls.append(("clear",))
        self.cells = []

    def sampler(self, sampling: SamplingParams, grammar: str | None, seed: int,
                offload: bool = False) -> Sampler:
        self.idle("a sampler build")
        if grammar == "bad":
            raise ValueError("the grammar could not be parsed")
        self.calls.append(("sampler", seed))
        sampler = FakeSampler(self, seed, offload and self.backend_sampling)
        self.samplers.append(sampler)
        return sampler

    def piece(self, token: int) -> bytes:
        return f"t{token} ".encode()

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def logprob(self, token: int, top: int, index: int) -> TokenLogprob:
        self.idle("reading log-probabilities")
        text = self.piece(token)
        return TokenLogprob(text.decode(), text, -0.5)

    def close(self) -> None:
        self.closed = True

    @staticmethod
    def _within(cell: Cell, p0: int, p1: int) -> bool:
        return (p0 < 0 or cell.pos >= p0) and (p1 < 0 or cell.pos < p1)
