"""The batching scheduler with a decode that runs on after the call (on a GPU): the text and
events of a step are made while the next decode runs, and come out the same as without.

The fake decoder (fake_decoder.py, `overlaps`) keeps each decode under way until `wait` and
asserts that nothing but `piece` / `is_eog` reaches it meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from llm_gateway.worker.engines.base import ChoiceEnd, Finished, Job, Piece
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out

from fake_decoder import EOG, FakeDecoder


@dataclass(eq=False)
class FakeWork:
    name: str
    cancelled: bool = False


def make(overlaps: bool, unified: bool = False, n_ids: int = 8, n_ctx: int = 32,
         **fake: Any) -> tuple[Scheduler, FakeDecoder]:
    decoder = FakeDecoder(n_batch=16, overlaps=overlaps, **fake)
    return Scheduler(decoder, n_ids, n_ctx, unified), decoder


def admit(scheduler: Scheduler, name: str, prompt: list[int], **job: Any) -> FakeWork:
    work = FakeWork(name)
    scheduler.admit(Job(prompt=prompt, **job), work, prompt, seed=7)
    return work


class Recorder:
    """Steps the scheduler as the engine does; keeps each step's events and what the decoder
    was doing when they were handed on."""

    def __init__(self, scheduler: Scheduler, decoder: FakeDecoder) -> None:
        self.scheduler, self.decoder = scheduler, decoder
        self.out: Out = []
        self.events: list[tuple[str, Any]] = []  # (work name, event)
        self.handed_in_flight: list[bool] = []  # per hand-off: was a decode under way?

    def hand_on(self) -> None:
        if self.out:
            self.handed_in_flight.append(self.decoder.in_flight)
            self.events += [(work.name, item) for work, item in self.out]
            self.out.clear()

    def step(self) -> bool:
        stepped = self.scheduler.step(self.out, self.hand_on)
        self.hand_on()
        return stepped

    def run(self, limit: int = 60) -> None:
        for _ in range(limit):
            if not self.step():
                return
        raise AssertionError("still running")

    def of(self, name: str) -> list[Any]:
        return [item for work, item in self.events if work == name]


def scenario(overlaps: bool, unified: bool = False) -> Recorder:
    """Sequences that end every way: eog, max_tokens, a stop string, n > 1 choices, a long
    chunked prompt, a cancel; with logprobs on one."""
    def rule(context: list[int]) -> int:
        return EOG if context[0] == 50 and len(context) >= 9 else 100 + len(context)

    scheduler, decoder = make(overlaps, unified, rule=rule)
    recorder = Recorder(scheduler, decoder)
    admit(scheduler, "eog", [50, 51, 52])
    admit(scheduler, "length", [60, 61], max_tokens=4, logprobs=True, top_logprobs=1)
    admit(scheduler, "stop", [70, 71, 72], stop=["t107"])  # the 5th token's text
    admit(scheduler, "choices", [80, 81], n=2, max_tokens=3)
    recorder.step()
    admit(scheduler, "long", list(range(200, 230)), max_tokens=1)  # 30 tokens: 2 chunks
    cancel = admit(scheduler, "cancel", [90, 91, 92])
    for _ in range(4):
        recorder.step()
    cancel.cancelled = True
    recorder.run()
    return recorder


@pytest.mark.parametrize("unified", [False, True])
def test_every_job_gets_the_same_events_with_and_without_overlap(unified):
    plain, overlapped = scenario(False, unified), scenario(True, unified)
    for name in ("eog", "length", "stop", "choices", "long", "cancel"):
        assert overlapped.of(name) == plain.of(name), name
    assert plain.of("stop")[-1] == Finished("stop", 3, 5, 0)
    assert [p.text for p in plain.of("stop") if isinstance(p, Piece)][-3:] == \
        ["t105 ", "t106 ", ""]
    assert plain.of("eog")[-1] == Finished("stop", 3, 6, 0)
    assert plain.of("length")[-1] == Finished("length", 2, 4, 0)
    assert plain.of("length")[0].logprob is not None
    assert plain.of("choices")[-1] == Finished("length", 2, 6, 0)
    assert plain.of("long")[-1] == Finished("length", 30, 1, 0)
    cancelled = plain.of("cancel")
    assert cancelled[-1].finish_reason == "cancelled" and cancelled[-1].completion_tokens > 0
    assert overlapped.scheduler.running == plain.scheduler.running == []
    assert overlapped.scheduler.generated_tokens == plain.scheduler.generated_tokens
    assert all(s.closed for s in overlapped.decoder.samplers)


def test_a_steps_events_go_out_while_the_next_decode_runs():
    overlapped = scenario(True)
    plain = scenario(False)
    # Without overlap every hand-off happens with no decode under way; with it, all but the
    # last ones (nothing left to decode) happen during one.
    assert not any(plain.handed_in_flight)
    assert sum(overlapped.handed_in_flight) >= len(overlapped.handed_in_flight) - 2
    assert overlapped.scheduler.overlap_seconds > 0 and plain.scheduler.overlap_seconds == 0


def test_a_stop_string_seen_during_the_decode_ends_the_sequence_after_it():
    scheduler, decoder = make(True)
    recorder = Recorder(scheduler, decoder)
    admit(scheduler, "a", [70, 71, 72], stop=["t104"])  # its 2nd token
    admit(scheduler, "b", [10, 11], max_tokens=5)
    recorder.run()
    assert recorder.of("a") == [Piece("t103 ", 103, None, 0), Piece("", 104, None, 0),
                                Finished("stop", 3, 2, 0)]
    # Token 104 was decoded (its decode was under way when its text stopped the sequence)
    # and its output went unused: no token was sampled from it.
    a_samples = [c for c in decoder.log("sample") if c[1] == 0]
    assert [c[2] for c in a_samples] == [103, 104]
    assert decoder.tokens(0) == [70, 71, 72, 103, 104]
    # Its cells are a cached prefix like any other: the next turn reuses all of them.
    assert scheduler.cache.cells() >= 5
    assert recorder.of("b")[-1] == Finished("length", 2, 5, 0)


def test_when_nothing_is_left_running_the_last_events_are_not_held():
    scheduler, _ = make(True)
    admit(scheduler, "a", [10, 11], max_tokens=2)
    out: Out = []
    scheduler.step(out)
    assert out == []  # its first token's text waits for the next decode
    scheduler.step(out)  # it ends here: no decode follows, so everything is out now
    assert [type(item) for _, item in out] == [Piece, Piece, Finished]
    assert scheduler.running == []


def fail_second_decode(scheduler: Scheduler, decoder: FakeDecoder) -> tuple[Out, Exception]:
    """One step, then a second whose decode fails; what the engine then hands on."""
    out: Out = []
    scheduler.step(out)
    decoder.fail = "device lost"
    with pytest.raises(RuntimeError) as failed:
        scheduler.step(out)
    scheduler.fail_all(failed.value, out)
    return out, failed.value


def test_a_failed_decode_gives_the_events_held_before_the_error():
    scheduler, decoder = make(True)
    work = admit(scheduler, "a", [10, 11])
    out, error = fail_second_decode(scheduler, decoder)
    assert [item for _, item in out] == [Piece("t102 ", 102, None, 0), error]
    assert out[0][0] is work and scheduler.running == []


def test_a_stop_string_in_the_text_held_at_a_failed_decode_ends_its_sequence_cleanly():
    # "a" is owed the text of token 102, which its stop string ends; the decode under way
    # when that text is made fails. Its client has the whole answer: it gets a finish, and
    # only "b", cut short, gets the error.
    scheduler, decoder = make(True)
    a = admit(scheduler, "a", [10, 11], stop=["t102"])
    b = admit(scheduler, "b", [20, 21])
    out, error = fail_second_decode(scheduler, decoder)
    of_a = [item for work, item in out if work is a]
    of_b = [item for work, item in out if work is b]
    assert of_a == [Piece("", 102, None, 0), Finished("stop", 2, 1, 0)]
    assert of_b == [Piece("t102 ", 102, None, 0), error]
    assert scheduler.running == [] and scheduler.cache.cells() == 0


def test_closing_cancels_after_the_events_held():
    scheduler, decoder = make(True)
    admit(scheduler, "a", [10, 11], n=2)
    out: Out = []
    scheduler.step(out)
    scheduler.step(out)
    assert len(out) == 2  # the first tokens of both choices (the second ones are held)
    decoder.in_flight = True  # as if closing found a decode under way
    scheduler.cancel_all(out)
    items = [item for _, item in out]
    assert [type(item) for item in items] == [Piece, Piece, Piece, Piece, ChoiceEnd,
                                              ChoiceEnd, Finished]
    assert items[-1] == Finished("cancelled", 2, 4, 0)
    assert all(s.closed for s in decoder.samplers)
