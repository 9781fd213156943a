"""A step's samplers on several threads (batch_sampling): in order, truly spread over threads,
errors carried back, and a scheduler sampling on threads doing exactly what it does on one."""

from __future__ import annotations

import threading
import time

import pytest

from llm_gateway.worker.engines.base import Job
from llm_gateway.worker.engines.batch_sampling import StepSampler
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batch_sequence import Out
from llm_gateway.worker.engines.decoder import Sampler

from fake_decoder import EOG, FakeDecoder, counting


class Recording(Sampler):
    """Answers index * 10 after a pause that releases the GIL, as llama.cpp's C call does."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: set[int] = set()
        self.fail = fail

    def sample(self, index: int) -> int:
        self.threads.add(threading.get_ident())
        time.sleep(0.005)
        if self.fail:
            raise RuntimeError(f"sampler {index} failed")
        return index * 10


def test_tokens_come_back_in_order_from_several_threads():
    step = StepSampler(4)
    try:
        samplers = [Recording() for _ in range(16)]
        tokens = step.sample([(s, i) for i, s in enumerate(samplers)])
        assert tokens == [i * 10 for i in range(16)]
        used = set().union(*(s.threads for s in samplers))
        assert len(used) == 4 and threading.get_ident() in used  # the caller takes a slice
    finally:
        step.close()


def test_few_sequences_or_one_thread_sample_on_the_calling_thread():
    for threads, count in ((4, 3), (1, 16)):
        step = StepSampler(threads)
        samplers = [Recording() for _ in range(count)]
        assert step.sample([(s, i) for i, s in enumerate(samplers)]) == \
            [i * 10 for i in range(count)]
        assert set().union(*(s.threads for s in samplers)) == {threading.get_ident()}
        step.close()


def test_a_failing_sampler_on_another_thread_raises_here():
    step = StepSampler(2)
    try:
        samplers = [Recording() for _ in range(3)] + [Recording(fail=True)]
        with pytest.raises(RuntimeError, match="sampler 3 failed"):
            step.sample([(s, i) for i, s in enumerate(samplers)])
    finally:
        step.close()


def run_many(threads: int) -> tuple[Out, FakeDecoder]:
    """Twelve sequences of different lengths, ending on EOG or max_tokens, on a scheduler that
    samples on `threads` threads."""
    def rule(context: list[int]) -> int:
        return EOG if len(context) >= 9 + context[0] % 4 else counting(context)

    fake = FakeDecoder(n_batch=64, capacity=1000, rule=rule)
    scheduler = Scheduler(fake, 12, 32, True, sample_threads=threads)
    works = []
    for i in range(12):
        work = type("Work", (), {"cancelled": False, "name": i})()
        works.append(work)
        prompt = [i, *range(40, 40 + i % 5 + 1)]
        scheduler.admit(Job(prompt=prompt, max_tokens=None if i % 3 else 2), work, prompt,
                        seed=i)
    out: Out = []
    for _ in range(50):
        if not scheduler.step(out):
            break
    scheduler.close()
    return [(w.name, item) for w, item in out], fake


def test_a_scheduler_on_threads_does_what_it_does_on_one():
    serial, fake_serial = run_many(1)
    threaded, fake_threaded = run_many(4)
    assert threaded == serial and len(serial) > 24
    assert [c for c in fake_threaded.calls if c[0] != "sample"] == \
        [c for c in fake_serial.calls if c[0] != "sample"]
    assert sorted(fake_threaded.log("sample")) == sorted(fake_serial.log("sample"))
