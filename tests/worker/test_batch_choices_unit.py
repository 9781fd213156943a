"""n > 1 choices in the batching scheduler, on the fake decoder (fake_decoder.py): the prompt
is decoded once, its cells copied to every choice, each choice sampled with seed + i; ends,
cancels and failures take every choice of the job."""

from __future__ import annotations

from typing import Any

import pytest
from test_batch_scheduler_unit import FakeWork, run

from llm_gateway.worker.engines.base import ChoiceEnd, Finished, Job, Piece
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out, Sequence

from fake_decoder import FakeDecoder, FakeSampler

PROMPT = [10, 11, 12, 13, 14, 15]


def by_seed(context: list[int], seed: int) -> int:
    """Seed 7 samples 100 + the tokens held, seed 8 200 + ..., seed 9 300 + ..."""
    return 100 * (seed - 6) + len(context)


def make(unified: bool, n_ids: int = 4, **fake: Any) -> tuple[Scheduler, FakeDecoder]:
    decoder = FakeDecoder(**{"seeded": by_seed, **fake})
    return Scheduler(decoder, n_ids, 32, unified), decoder


def admit(scheduler: Scheduler, prompt: list[int], n: int,
          **job: Any) -> tuple[FakeWork, list[Sequence]]:
    work = FakeWork("job")
    leader = scheduler.admit(Job(prompt=prompt, n=n, **job), work, prompt, seed=7)
    assert leader.group is not None
    return work, leader.group.members


def tokens(out: Out, index: int) -> list[int | None]:
    return [e.token_id for _, e in out if isinstance(e, Piece) and e.index == index]


def ends(out: Out) -> list[ChoiceEnd | Finished]:
    return [e for _, e in out if isinstance(e, ChoiceEnd | Finished)]


@pytest.mark.parametrize("unified", [True, False])
def test_the_prompt_is_decoded_once_and_copied_to_every_choice(unified):
    scheduler, fake = make(unified)
    work, members = admit(scheduler, PROMPT, 3, max_tokens=3)
    # A sampler per choice, seeded 7, 8, 9; an id each, next to one another; no cells yet.
    assert fake.log("sampler") == [("sampler", 7), ("sampler", 8), ("sampler", 9)]
    assert [s.seq_id for s in members] == [0, 1, 2] and fake.log("decode", "copy") == []
    assert [s.index for s in members] == [0, 1, 2]
    out: Out = []
    run(scheduler, out)
    decodes = [call[1] for call in fake.log("decode")]
    assert decodes == [
        [(0, 0, 6, True)],  # the prompt, once, by the first choice alone
        [(0, 6, 1, True), (1, 6, 1, True), (2, 6, 1, True)],
        [(0, 7, 1, True), (1, 7, 1, True), (2, 7, 1, True)],
    ]
    # Right after the prompt's decode, its cells go to the others, which sample from the
    # same logits (those of sequence 0) with their own seeds.
    assert fake.calls.index(("copy", 0, 1, -1, -1)) == fake.calls.index(
        ("decode", [(0, 0, 6, True)], "ok")) + 1
    assert fake.log("copy")[:2] == [("copy", 0, 1, -1, -1), ("copy", 0, 2, -1, -1)]
    assert fake.log("sample")[:3] == [("sample", 0, 106), ("sample", 0, 206),
                                      ("sample", 0, 306)]
    assert [tokens(out, i) for i in range(3)] == [[106, 107, 108], [206, 207, 208],
                                                  [306, 307, 308]]
    for i in range(3):  # each choice went on from its own cells (the last token undecoded)
        assert fake.tokens(i) == [*PROMPT, 100 * (i + 1) + 6, 100 * (i + 1) + 7]
    assert ends(out) == [ChoiceEnd(0, "length", 3), ChoiceEnd(1, "length", 3),
                         ChoiceEnd(2, "length", 3), Finished("length", 6, 9, 0)]
    assert out[-1] == (work, Finished("length", 6, 9, 0)) and {w for w, _ in out} == {work}
    assert (scheduler.prompt_tokens, scheduler.generated_tokens) == (6, 9)
    assert scheduler.running == [] and all(s.closed for s in fake.samplers)


def test_a_choice_may_end_before_the_others_with_its_own_reason():
    def stop_at_seed_8(context: list[int], seed: int) -> int:
        return 2 if seed == 8 and len(context) > 6 else by_seed(context, seed)  # 2: EOG

    scheduler, fake = make(False, seeded=stop_at_seed_8)
    admit(scheduler, PROMPT, 2, max_tokens=4)
    out: Out = []
    run(scheduler, out)
    assert tokens(out, 0) == [106, 107, 108, 109] and tokens(out, 1) == [206]
    assert ends(out) == [ChoiceEnd(1, "stop", 1), ChoiceEnd(0, "length", 4),
                         Finished("length", 6, 5, 0)]
    assert [call[1] for call in fake.log("decode")][-1] == [(0, 8, 1, True)]


def test_prefix_reuse_counts_the_cached_prompt_once():
    scheduler, fake = make(True)
    out: Out = []
    admit(scheduler, PROMPT, 2, max_tokens=1)
    run(scheduler, out)
    out.clear()
    _, members = admit(scheduler, [*PROMPT, 40, 41], 2, max_tokens=1)
    assert members[0].cached == 6 and members[1].cached == 0
    run(scheduler, out)
    assert fake.log("decode")[-1][1] == [(members[0].seq_id, 6, 2, True)]
    assert ends(out)[-1] == Finished("length", 8, 2, 6)


@pytest.mark.parametrize("unified", [True, False])
def test_cancel_ends_every_choice(unified):
    scheduler, fake = make(unified)
    work, _ = admit(scheduler, PROMPT, 3)
    out: Out = []
    scheduler.step(out)
    scheduler.step(out)
    work.cancelled = True
    out.clear()
    scheduler.step(out)
    assert ends(out) == [ChoiceEnd(0, "cancelled", 2), ChoiceEnd(1, "cancelled", 2),
                         ChoiceEnd(2, "cancelled", 2), Finished("cancelled", 6, 6, 0)]
    assert tokens(out, 0) == tokens(out, 1) == tokens(out, 2) == []
    assert scheduler.running == [] and all(s.closed for s in fake.samplers)
    # Every id is free again or holds a cached prefix: a job of 4 choices fits.
    assert sorted([*scheduler.layout.free_ids, *scheduler.cache.lru_ids()]) == [0, 1, 2, 3]
    admit(scheduler, [20, 21, 22], 4, max_tokens=1)
    run(scheduler, out)
    assert ends(out)[-1] == Finished("length", 3, 4, 0)


def test_cancel_before_the_prompt_is_decoded_gives_every_id_back():
    scheduler, fake = make(False)
    work, members = admit(scheduler, PROMPT, 3)
    work.cancelled = True
    out: Out = []
    assert scheduler.step(out) is False
    assert ends(out) == [ChoiceEnd(0, "cancelled", 0), ChoiceEnd(1, "cancelled", 0),
                         ChoiceEnd(2, "cancelled", 0), Finished("cancelled", 6, 0, 0)]
    assert fake.log("decode", "copy") == [] and scheduler.running == []
    assert scheduler.layout.free_ids == {0, 1, 2, 3} and len(scheduler.cache) == 0
    assert all(isinstance(s.sampler, FakeSampler) and s.sampler.closed for s in members)


def test_a_first_choice_ended_before_its_prompt_is_in_takes_the_others_with_it():
    # Its prompt is fed 4 tokens a step; the second chunk finds no room and nothing cached.
    scheduler, fake = make(True, n_batch=4, capacity=6)
    _, members = admit(scheduler, [*PROMPT, 16, 17], 2)
    out: Out = []
    scheduler.step(out)
    scheduler.step(out)
    assert [call[2] for call in fake.log("decode")] == ["ok", "full"]
    assert ends(out) == [ChoiceEnd(0, "length", 0), ChoiceEnd(1, "length", 0),
                         Finished("length", 8, 0, 0)]
    assert scheduler.running == [] and fake.log("copy") == []
    assert members[1].seq_id in scheduler.layout.free_ids


def test_a_failed_decode_tells_a_job_once_however_many_choices_it_has():
    scheduler, fake = make(True)
    work, _ = admit(scheduler, PROMPT, 3)
    out: Out = []
    scheduler.step(out)
    fake.fail = "llama_decode returned -1"
    with pytest.raises(RuntimeError) as raised:
        scheduler.step(out)
    out.clear()
    scheduler.fail_all(raised.value, out)
    assert out == [(work, raised.value)]
    assert scheduler.running == [] and all(s.closed for s in fake.samplers)


def test_a_bad_grammar_holds_nothing_for_any_choice():
    scheduler, _ = make(False)
    with pytest.raises(ValueError, match="grammar"):
        admit(scheduler, PROMPT, 3, grammar="bad")
    assert scheduler.running == [] and scheduler.layout.free_ids == {0, 1, 2, 3}
