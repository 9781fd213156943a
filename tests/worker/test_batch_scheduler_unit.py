"""The batching scheduler on a fake decoder (fake_decoder.py), without a model: admission,
prefix reuse, chunked prefill, KV-full eviction, cancel, compaction and release, checked by
the exact decodes and cache edits it asks for and by what each sequence's cells hold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from llm_gateway.worker.engines.base import Finished, Job, Piece
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out, Sequence

from fake_decoder import EOG, FakeDecoder, FakeSampler, counting


@dataclass(eq=False)
class FakeWork:
    name: str
    cancelled: bool = False


def make(unified: bool = True, n_ids: int = 4, n_ctx: int = 32, n_batch: int = 64,
         capacity: int = 1000,
         rule: Callable[[list[int]], int] = counting) -> tuple[Scheduler, FakeDecoder]:
    fake = FakeDecoder(n_batch=n_batch, capacity=capacity, rule=rule)
    return Scheduler(fake, n_ids, n_ctx, unified), fake


def admit(scheduler: Scheduler, name: str, prompt: list[int],
          **job: Any) -> tuple[FakeWork, Sequence]:
    work = FakeWork(name)
    seq = scheduler.admit(Job(prompt=prompt, **job), work, prompt, seed=7)
    return work, seq


def run(scheduler: Scheduler, out: Out, limit: int = 50) -> None:
    """Step until nothing is left to decode."""
    for _ in range(limit):
        if not scheduler.step(out):
            return
    raise AssertionError("still running")


def closed(seq: Sequence) -> bool:
    assert isinstance(seq.sampler, FakeSampler)
    return seq.sampler.closed


def tokens_of(out: Out, work: FakeWork) -> list[int | None]:
    return [item.token_id for w, item in out if w is work and isinstance(item, Piece)]


def finished(out: Out, work: FakeWork) -> list[Finished]:
    return [item for w, item in out if w is work and isinstance(item, Finished)]


# -- admission --------------------------------------------------------------------------------


def test_a_prompt_that_does_not_fit_or_a_bad_grammar_is_refused_and_holds_nothing():
    scheduler, fake = make(n_ctx=8)
    with pytest.raises(ValueError, match="prompt of 8 tokens does not fit a context of 8"):
        admit(scheduler, "a", list(range(10, 18)))  # 8 + 1 generated > 8
    with pytest.raises(ValueError, match="prompt of 0 tokens"):
        admit(scheduler, "a", [])
    with pytest.raises(ValueError, match="grammar"):
        admit(scheduler, "a", [10, 11], grammar="bad")
    assert fake.calls == [] and scheduler.running == []
    assert scheduler.layout.free_ids == {0, 1, 2, 3} and scheduler.prompt_tokens == 0
    _, seq = admit(scheduler, "b", list(range(10, 17)))  # 7 + 1 fits
    assert seq.seq_id == 0 and fake.calls == [("sampler", 7)]


@pytest.mark.parametrize("unified", [True, False])
def test_the_next_turn_reuses_a_cached_entry(unified):
    scheduler, fake = make(unified=unified)
    prompt = [10, 11, 12, 13, 14, 15]
    out: Out = []
    first, _ = admit(scheduler, "a", prompt, max_tokens=2)
    run(scheduler, out)
    assert tokens_of(out, first) == [106, 107]
    # The answer's last token was never decoded: the entry holds the prompt and the first.
    assert scheduler.cache.lru_ids() == [0] and fake.tokens(0) == [*prompt, 106]
    mark = len(fake.calls)
    turn = [*prompt, 106, 50, 51]
    second, seq = admit(scheduler, "b", turn, max_tokens=1)
    assert (seq.cached, seq.n_past) == (7, 7)
    if unified:  # a new id tags the entry's cells; the entry stays
        assert fake.calls[mark:] == [("sampler", 7), ("copy", 0, 1, 0, 7)]
        assert seq.seq_id == 1 and scheduler.cache.lru_ids() == [0]
    else:  # the entry's stream is taken over in place
        assert fake.calls[mark:] == [("sampler", 7), ("remove", 0, 7, -1)]
        assert seq.seq_id == 0 and scheduler.cache.lru_ids() == []
    run(scheduler, out)
    assert fake.log("decode")[-1] == ("decode", [(seq.seq_id, 7, 2, True)], "ok")
    assert fake.tokens(seq.seq_id) == turn
    assert tokens_of(out, second) == [100 + len(turn)]
    assert finished(out, second) == [Finished("length", 9, 1, 7)]


def test_a_prompt_reuses_a_running_sequence_but_a_seeded_one_does_not():
    scheduler, fake = make()
    system = list(range(20, 30))
    out: Out = []
    admit(scheduler, "a", system)
    scheduler.step(out)  # its prompt is in the cache now; it goes on generating
    _, b = admit(scheduler, "b", [*system[:8], 60, 61, 62])
    _, c = admit(scheduler, "c", [*system, 70, 71], seed=5)
    assert fake.log("copy", "remove") == [("copy", 0, 1, 0, 8)]
    assert (b.seq_id, b.cached, c.seq_id, c.cached) == (1, 8, 2, 0)
    scheduler.step(out)
    assert fake.log("decode")[-1] == (
        "decode", [(0, 10, 1, True), (1, 8, 3, True), (2, 0, 12, True)], "ok")
    assert fake.tokens(1) == [*system[:8], 60, 61, 62]
    assert fake.tokens(2) == [*system, 70, 71]


# -- chunked prefill --------------------------------------------------------------------------


def test_a_long_prompt_is_fed_in_chunks_while_a_generating_sequence_advances_every_step():
    scheduler, fake = make(unified=False, n_batch=4)
    out: Out = []
    talker, _ = admit(scheduler, "a", [30, 31, 32])
    scheduler.step(out)
    reader, seq = admit(scheduler, "b", list(range(40, 50)))
    assert seq.seq_id == 1  # next to the running one
    per_step = []
    for _ in range(5):
        before = len(out)
        scheduler.step(out)
        per_step.append((tokens_of(out[before:], talker), tokens_of(out[before:], reader)))
    assert [call[1] for call in fake.log("decode")[1:]] == [
        [(0, 3, 1, True), (1, 0, 3, False)],
        [(0, 4, 1, True), (1, 3, 3, False)],
        [(0, 5, 1, True), (1, 6, 3, False)],
        [(0, 6, 1, True), (1, 9, 1, True)],
        [(0, 7, 1, True), (1, 10, 1, True)],
    ]
    assert per_step == [([104], []), ([105], []), ([106], []), ([107], [110]),
                        ([108], [111])]
    assert fake.tokens(1) == [*range(40, 50), 110]
    assert scheduler.split_steps == 0 and scheduler.steps == 6


# -- the KV cache full ------------------------------------------------------------------------


def test_a_full_cache_evicts_the_least_recently_used_entry_first():
    scheduler, fake = make(n_ctx=10, capacity=10)
    out: Out = []
    admit(scheduler, "a", [10, 11, 12], max_tokens=1)
    run(scheduler, out)
    admit(scheduler, "b", [20, 21, 22], max_tokens=1)
    run(scheduler, out)
    # The third reuses the first's cells, which makes the second the least recently used.
    _, c = admit(scheduler, "c", [10, 11, 12, 13, 14], max_tokens=1)
    assert (c.seq_id, c.cached) == (2, 3)
    run(scheduler, out)
    assert scheduler.cache.lru_ids() == [1, 0, 2] and fake.used() == 8
    mark = len(fake.calls)
    last, _ = admit(scheduler, "d", [40, 41, 42, 43], max_tokens=1)
    run(scheduler, out)
    assert [call for call in fake.calls[mark:] if call[0] != "sample"] == [
        ("sampler", 7),
        ("decode", [(3, 0, 4, True)], "full"),
        ("remove", 1, -1, -1),
        ("decode", [(3, 0, 4, True)], "ok"),
    ]
    assert scheduler.cache.lru_ids() == [0, 2, 3] and fake.held_ids() == {0, 2, 3}
    assert fake.tokens(2) == [10, 11, 12, 13, 14] and fake.tokens(0) == [10, 11, 12]
    assert finished(out, last) == [Finished("length", 4, 1, 0)]


def test_with_no_entry_left_the_longest_sequence_ends_with_length():
    scheduler, fake = make(n_ctx=10, capacity=10)
    out: Out = []
    longer, a = admit(scheduler, "a", [10, 11, 12, 13])
    shorter, _ = admit(scheduler, "b", [20, 21, 22])
    scheduler.step(out)
    scheduler.step(out)
    assert fake.used() == 9
    mark = len(fake.calls)
    scheduler.step(out)
    scheduler.step(out)
    assert [call for call in fake.calls[mark:] if call[0] != "sample"] == [
        ("decode", [(0, 5, 1, True), (1, 4, 1, True)], "full"),
        ("decode", [(1, 4, 1, True)], "ok"),  # the longer one ended; its cells stay cached
        ("decode", [(1, 5, 1, True)], "full"),
        ("remove", 0, -1, -1),  # then they are the first to go
        ("decode", [(1, 5, 1, True)], "ok"),
    ]
    assert finished(out, longer) == [Finished("length", 4, 2, 0)]
    assert tokens_of(out, longer) == [104, 105] and closed(a)
    assert tokens_of(out, shorter) == [103, 104, 105, 106]
    assert [s.seq_id for s in scheduler.running] == [1] and scheduler.cache.lru_ids() == []


# -- cancel -----------------------------------------------------------------------------------


def test_a_cancelled_sequence_is_released_at_the_next_step_and_keeps_its_cells():
    scheduler, fake = make()
    out: Out = []
    dropped, a = admit(scheduler, "a", [10, 11, 12])
    kept, _ = admit(scheduler, "b", [20, 21])
    scheduler.step(out)
    dropped.cancelled = True
    before = len(out)
    scheduler.step(out)
    assert out[before] == (dropped, Finished("cancelled", 3, 1, 0))
    assert tokens_of(out[before:], dropped) == [] and tokens_of(out[before:], kept) == [103]
    assert fake.log("decode")[-1] == ("decode", [(1, 2, 1, True)], "ok")
    assert closed(a) and scheduler.cache.lru_ids() == [0]
    assert fake.tokens(0) == [10, 11, 12]  # its sampled token was never decoded


def test_a_sequence_cancelled_before_its_first_decode_gives_its_id_back():
    scheduler, fake = make()
    out: Out = []
    work, seq = admit(scheduler, "a", [10, 11, 12])
    work.cancelled = True
    assert scheduler.step(out) is False
    assert out == [(work, Finished("cancelled", 3, 0, 0))]
    assert fake.log("decode", "remove") == [("remove", 0, -1, -1)]
    assert scheduler.layout.free_ids == {0, 1, 2, 3} and len(scheduler.cache) == 0
    assert closed(seq)


# -- compaction (split cache) -----------------------------------------------------------------


def test_an_end_in_the_block_moves_the_last_sequence_into_the_hole():
    scheduler, fake = make(unified=False, n_ids=6)
    out: Out = []
    prompts = {"a": [10, 11], "b": [20, 21, 22], "c": [30, 31], "d": [40, 41, 42, 43]}
    works = {}
    for name, prompt in prompts.items():
        works[name], seq = admit(scheduler, name, prompt, max_tokens=1 if name == "b" else None)
        assert seq.seq_id == len(works) - 1
    moved = scheduler.running[3]
    scheduler.step(out)  # b ends: its cells stay cached on id 1, between a and c
    assert scheduler.cache.lru_ids() == [1]
    mark = len(fake.calls)
    scheduler.step(out)
    assert fake.log("copy", "remove")[-4:] == fake.calls[mark:mark + 4] == [
        ("copy", 1, 4, -1, -1), ("remove", 1, -1, -1),  # the entry moves out of the way
        ("copy", 3, 1, -1, -1), ("remove", 3, -1, -1),  # d moves into the hole
    ]
    assert fake.calls[mark + 4] == ("decode", [(0, 2, 1, True), (1, 4, 1, True),
                                               (2, 2, 1, True)], "ok")
    assert moved.seq_id == 1 and fake.tokens(1) == [40, 41, 42, 43, 104]
    assert fake.tokens(4) == [20, 21, 22] and scheduler.cache.lru_ids() == [4]
    assert scheduler.layout.free_ids == {3, 5} and fake.held_ids() == {0, 1, 2, 4}
    assert tokens_of(out, works["d"]) == [104, 105]  # it samples from its moved cells
    assert scheduler.compactions == 1 and scheduler.split_steps == 0


def test_the_unified_layout_never_compacts():
    scheduler, fake = make(unified=True, n_ids=6)
    out: Out = []
    for name, length in (("a", None), ("b", 1), ("c", None), ("d", None)):
        admit(scheduler, name, [10, 11, 12], max_tokens=length, seed=1)
    scheduler.step(out)
    scheduler.step(out)
    assert fake.log("copy", "remove") == []
    assert fake.log("decode")[-1][1] == [(0, 3, 1, True), (2, 3, 1, True), (3, 3, 1, True)]
    assert scheduler.compactions == 0 and scheduler.split_steps == 0


# -- release ----------------------------------------------------------------------------------


def test_a_finished_sequence_keeps_its_cells_as_a_cached_prefix():
    def rule(context: list[int]) -> int:
        return EOG if len(context) >= 6 else counting(context)

    scheduler, fake = make(n_ctx=16, rule=rule)
    out: Out = []
    _, seq = admit(scheduler, "a", [10, 11, 12, 13])
    run(scheduler, out)
    assert [item for _, item in out] == [Piece("t104 ", 104), Piece("t105 ", 105),
                                         Finished("stop", 4, 2, 0)]
    assert scheduler.running == [] and scheduler.cache.lru_ids() == [0]
    assert fake.tokens(0) == [10, 11, 12, 13, 104, 105] and fake.log("remove") == []
    assert 0 not in scheduler.layout.free_ids and closed(seq)
    assert scheduler.kv_usage() == 6 / 16
    assert (scheduler.prompt_tokens, scheduler.generated_tokens, scheduler.steps) == (4, 2, 3)
    scheduler.clear()
    assert fake.calls[-1] == ("clear",) and fake.used() == 0 and len(scheduler.cache) == 0
    assert scheduler.layout.free_ids == {0, 1, 2, 3}


def test_a_failed_decode_ends_every_sequence_with_the_error_and_empties_the_cache():
    scheduler, fake = make()
    out: Out = []
    works = [admit(scheduler, name, [10, 11])[0] for name in "ab"]
    scheduler.step(out)
    fake.fail = "llama_decode returned -1"
    with pytest.raises(RuntimeError, match="returned -1") as raised:
        scheduler.step(out)
    error = raised.value
    out.clear()
    scheduler.fail_all(error, out)  # what the engine does with it
    assert out == [(works[0], error), (works[1], error)]
    assert all(s.closed for s in fake.samplers) and fake.calls[-1] == ("clear",)
    assert scheduler.running == [] and scheduler.layout.free_ids == {0, 1, 2, 3}
