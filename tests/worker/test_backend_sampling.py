"""`--backend-sampling` on a real worker: llama.cpp picks tokens inside the decode for the
requests that allow it, alongside requests sampled on the host in the same steps, with the
answers sampling on the host gives (greedy), reproducible seeded answers, and a count of the
sequences it sampled."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from test_worker_limits import _Stream

from worker_support import WorkerProcess, metric, serving, user

PROMPTS = [f"Request {i}. Tell me about the history of {topic}." for i, topic in
           enumerate(("bread", "ships", "clocks", "paper"))]
COUNTER = "llm_worker_backend_sampled_sequences_total"


@pytest.fixture(scope="module")
def host() -> Iterator[WorkerProcess]:
    yield from serving("--engine", "batching", "--parallel", "4")


@pytest.fixture(scope="module")
def backend() -> Iterator[WorkerProcess]:
    # Two spare ids: finished sequences are cached there, so the next ones start on free ids
    # in order (the compaction test below needs its three streams on ids 0, 1, 2).
    yield from serving("--engine", "batching", "--parallel", "4", "--cache-slots", "2",
                       "--backend-sampling")


def _offloaded(server: WorkerProcess) -> float:
    return metric(server, COUNTER)


def _answer(server: WorkerProcess, prompt: str, **extra) -> str:
    r = server.client().chat.completions.create(
        model="m", messages=user(prompt), max_tokens=24, seed=3, **extra)
    return r.choices[0].message.content


def _together(server: WorkerProcess, **extra) -> list[str]:
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(lambda p: _answer(server, p, **extra), PROMPTS))


def test_greedy_answers_are_the_host_samplers_answers(host, backend):
    before = _offloaded(backend)
    assert _together(backend, temperature=0) == _together(host, temperature=0)
    assert _offloaded(backend) - before == len(PROMPTS)
    assert _offloaded(host) == 0


def test_a_seeded_answer_is_the_same_alone_and_among_others(backend):
    sampled = {"temperature": 0.9, "top_p": 0.95}
    alone = [_answer(backend, p, **sampled) for p in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)
    assert _together(backend, **sampled) == alone


def test_requests_whose_logits_have_another_reader_are_sampled_on_the_host(backend):
    client = backend.client()
    before = _offloaded(backend)

    def logprobs() -> object:
        return client.chat.completions.create(
            model="m", messages=user(PROMPTS[0]), max_tokens=8, temperature=0, logprobs=True,
            top_logprobs=2).choices[0].logprobs

    def choices() -> list[str]:
        r = client.chat.completions.create(model="m", messages=user(PROMPTS[1]), max_tokens=8,
                                           temperature=0.8, n=2, seed=5)
        return [c.message.content for c in r.choices]

    with ThreadPoolExecutor(4) as pool:  # in the same steps as two offloaded ones
        plain = [pool.submit(_answer, backend, p, temperature=0) for p in PROMPTS[2:]]
        probs, two = pool.submit(logprobs), pool.submit(choices)
        answers = [f.result() for f in plain]
        content = probs.result().content
        assert len(two.result()) == 2 and all(two.result())
    assert all(answers) and len(content) == 8
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
    assert _offloaded(backend) - before == 2  # the two plain ones only


def _content(lines: Iterator[str]) -> str:
    text = []
    for line in lines:
        if line.startswith("data: {"):
            delta = orjson.loads(line[6:])["choices"]
            if delta and delta[0]["delta"].get("content"):
                text.append(delta[0]["delta"]["content"])
    return "".join(text)


def test_a_sequence_moved_by_compaction_keeps_its_chain(host, backend):
    """Three streams on ids 0, 1, 2; the middle one ends first, so the third is moved onto
    id 1 mid-answer, its chain with it (a copy: llama.cpp prepares a chain for its graph
    once). Its greedy answer is still the host sampler's."""
    url = backend.url + "/v1/chat/completions"
    long = {"model": "m", "messages": user(PROMPTS[2]), "max_tokens": 40, "temperature": 0,
            "seed": 3, "stream": True, "logit_bias": {"2": -100}}
    moved_before = metric(backend, "llm_worker_compactions_total")
    opened = []
    try:
        for max_tokens in (40, 10, 40):
            opened.append(_Stream(url, {**long, "max_tokens": max_tokens}))
            opened[-1].until_content()
        third = _content(opened[2].lines)
    finally:
        for stream in opened:
            stream.close()
    assert metric(backend, "llm_worker_compactions_total") > moved_before
    reference = host.client().chat.completions.create(
        model="m", messages=user(PROMPTS[2]), max_tokens=40, temperature=0, seed=3,
        logit_bias={"2": -100}).choices[0].message.content
    assert reference.endswith(third) and len(third) > 20
    assert backend.health()["status"] == "ok"
