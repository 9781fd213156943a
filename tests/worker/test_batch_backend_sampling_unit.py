"""Sampler chains run inside the decode (`--backend-sampling`), on the fake decoder: a chain is
attached to its sequence's id from admission, follows the sequence when compaction moves it,
is detached before it is freed, and is never offered for a sequence whose logits another
reader needs (log-probabilities, n > 1 choices). The fake's offloaded chain may only read its
own sequence's outputs, as llama.cpp's backend sampling does."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.worker.engines.base import Job, Piece
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out

from fake_decoder import FakeDecoder


class Work:
    cancelled = False


def make(unified: bool = False, n_ids: int = 6) -> tuple[Scheduler, FakeDecoder]:
    fake = FakeDecoder(backend_sampling=True)
    return Scheduler(fake, n_ids, 32, unified), fake


def admit(scheduler: Scheduler, prompt: list[int], seed: int, **job: Any) -> Work:
    work = Work()
    scheduler.admit(Job(prompt=prompt, **job), work, prompt, seed=seed)
    return work


def tokens(out: Out, work: Work) -> list[int | None]:
    return [item.token_id for w, item in out if w is work and isinstance(item, Piece)]


def test_a_chain_follows_its_sequence_when_compaction_moves_it():
    scheduler, fake = make()
    out: Out = []
    works = [admit(scheduler, [10 * (i + 1), 11], seed=i, max_tokens=1 if i == 1 else 4)
             for i in range(4)]
    assert fake.log("attach") == [("attach", i, i) for i in range(4)]
    scheduler.step(out)
    scheduler.step(out)  # the second ended: the fourth moves into its id
    assert scheduler.compactions == 1
    assert fake.log("attach")[-1] == ("attach", 3, 1)
    assert sorted(fake.attached) == [0, 1, 2]
    for _ in range(10):
        if not scheduler.step(out):
            break
    assert tokens(out, works[3]) == [102, 103, 104, 105]  # (read from its own outputs)
    assert fake.attached == {}  # every chain detached before it was freed
    assert all(s.closed for s in fake.samplers)


@pytest.mark.parametrize("job", [{"logprobs": True}, {"n": 2}], ids=["logprobs", "choices"])
def test_a_sequence_whose_logits_have_another_reader_samples_on_the_host(job):
    scheduler, fake = make(unified=True)
    out: Out = []
    plain = admit(scheduler, [10, 11], seed=5, max_tokens=2)
    other = admit(scheduler, [20, 21], seed=9, max_tokens=2, **job)
    assert fake.log("attach") == [("attach", 5, 0)]  # the plain one only
    for _ in range(5):
        scheduler.step(out)
    assert tokens(out, plain) == [102, 103] and len(tokens(out, other)) == 2 * job.get("n", 1)
    assert fake.attached == {}


def test_a_failed_decode_detaches_every_chain():
    scheduler, fake = make()
    out: Out = []
    for seed in (1, 2):
        admit(scheduler, [10, 11], seed=seed)
    scheduler.step(out)
    assert sorted(fake.attached) == [0, 1]
    fake.fail = "llama_decode returned -1"
    with pytest.raises(RuntimeError) as raised:
        scheduler.step(out)
    scheduler.fail_all(raised.value, out)
    assert fake.attached == {}
