"""`--decode-overlap` on a real worker: the text and events of each step made while the next
decode runs (on by default on a GPU; forced on here, on the CPU) give every request the
answer it gets without: greedy text, stop strings, log-probabilities, n > 1, streams."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker_support import WorkerProcess, metric, serving, user

PROMPTS = [f"Request {i}. Tell me about the history of {topic}." for i, topic in
           enumerate(("bread", "ships", "clocks", "paper"))]


@pytest.fixture(scope="module")
def auto() -> Iterator[WorkerProcess]:
    yield from serving("--engine", "batching", "--parallel", "6")


@pytest.fixture(scope="module")
def overlapped() -> Iterator[WorkerProcess]:
    yield from serving("--engine", "batching", "--parallel", "6", "--decode-overlap", "on")


def _overlap_seconds(server: WorkerProcess) -> float:
    return metric(server, "llm_worker_overlap_seconds_total")


def _requests(server: WorkerProcess) -> list[object]:
    """Requests of every kind at once, each answered greedily."""
    client = server.client()

    def plain(prompt: str) -> object:
        r = client.chat.completions.create(model="m", messages=user(prompt), max_tokens=20,
                                           temperature=0)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens

    def stop(prompt: str) -> object:
        # The stop string is a word of the greedy answer: the text must end right before it.
        whole = plain(prompt)[0]
        word = whole.split()[3]
        r = client.chat.completions.create(model="m", messages=user(prompt), max_tokens=20,
                                           temperature=0, stop=[word])
        return word, r.choices[0].message.content, r.choices[0].finish_reason

    def logprobs(prompt: str) -> object:
        r = client.chat.completions.create(model="m", messages=user(prompt), max_tokens=6,
                                           temperature=0, logprobs=True, top_logprobs=2)
        return [(t.token, round(t.logprob, 3)) for t in r.choices[0].logprobs.content]

    def choices(prompt: str) -> object:
        r = client.chat.completions.create(model="m", messages=user(prompt), max_tokens=8,
                                           temperature=0, n=2)
        return sorted(c.message.content for c in r.choices)

    def streamed(prompt: str) -> object:
        pieces = []
        for chunk in client.chat.completions.create(model="m", messages=user(prompt),
                                                    max_tokens=12, temperature=0,
                                                    stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        return pieces

    calls = [(plain, PROMPTS[0]), (stop, PROMPTS[1]), (logprobs, PROMPTS[2]),
             (choices, PROMPTS[3]), (streamed, PROMPTS[0])]
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call[0](call[1]), calls))


def test_every_kind_of_request_gets_the_same_answer_with_overlap(auto, overlapped):
    before = _overlap_seconds(overlapped)
    expected = _requests(auto)
    assert _requests(overlapped) == expected
    word, text, reason = expected[1]
    assert reason == "stop" and word not in text
    assert len(expected[4]) > 3  # the stream came in pieces
    # On the CPU the default leaves it off (the decode is done when llama_decode returns);
    # forced on, host work was done while decodes ran.
    assert _overlap_seconds(auto) == 0
    assert _overlap_seconds(overlapped) > before


def test_a_request_alone_ends_without_waiting_for_another_step(overlapped):
    # The last events of a request are not held for a decode that will never come.
    client = overlapped.client()
    r = client.chat.completions.create(model="m", messages=user(PROMPTS[2]), max_tokens=5,
                                       temperature=0, timeout=30)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
