"""The batching engine on a real worker: sequences decoded together, same greedy answers,
cancellation, prefix reuse, the bounded queue, and what /health and /metrics report."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_worker_limits import LONG, _Stream

from worker_support import WorkerProcess, user

PROMPTS = [f"Request {i}. Tell me about the history of {topic}." for i, topic in
           enumerate(("bread", "ships", "clocks", "paper", "glass", "salt"))]
SYSTEM = {"role": "system", "content": "You are a careful assistant who answers briefly. " * 20}


@pytest.fixture(scope="module")
def batching() -> Iterator[WorkerProcess]:
    server = WorkerProcess("--engine", "batching", "--parallel", "3", "--max-queue",
                           "3").start()
    yield server
    server.stop()


def _greedy(server: WorkerProcess, prompt: str, **extra) -> tuple[str, dict]:
    r = server.client().chat.completions.create(
        model="m", messages=user(prompt), max_tokens=32, temperature=0, **extra)
    return r.choices[0].message.content, r.usage


def _metrics(server: WorkerProcess) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def _tokens(server: WorkerProcess, prompt: str, **extra) -> tuple[list, dict]:
    r = server.client().chat.completions.create(
        model="m", messages=user(prompt), max_tokens=32, temperature=0, logprobs=True,
        top_logprobs=3, **extra)
    return r.choices[0].logprobs.content, r.usage


def test_greedy_answers_are_the_same_alone_and_together(batching):
    # Seeded: no prefix reuse, so only the batching differs between the two runs.
    alone = [_greedy(batching, p, seed=3)[0] for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:  # 6 requests, 3 at a time, 3 waiting
        together = list(pool.map(lambda p: _greedy(batching, p, seed=3)[0], PROMPTS))
    assert together == alone


def test_a_reused_prefix_gives_the_fresh_answer(batching):
    """Unseeded, a request copies the KV cells of an earlier one with the same prompt and
    computes only the rest (at least its last two tokens). On this machine the answers then
    match a fresh run's bit for bit. Other CPUs may sum in another order, so the bound held
    here is looser: until the answers part, every token's log-probability agrees closely,
    and where they part the reused token was the fresh run's runner-up at a near tie. Cells
    copied from the wrong place or sequence break both by whole units."""
    fresh = [_tokens(batching, p, seed=3)[0] for p in PROMPTS]
    with ThreadPoolExecutor(3) as pool:
        reused = list(pool.map(lambda p: _tokens(batching, p), PROMPTS))
    assert all(usage.prompt_tokens_details.cached_tokens > 0 for _, usage in reused)
    for (tokens, _), reference in zip(reused, fresh, strict=True):
        assert tokens and reference
        for mine, theirs in zip(tokens, reference, strict=True):
            if mine.token != theirs.token:
                rival = {t.token: t.logprob for t in theirs.top_logprobs}
                assert mine.token in rival, (mine, theirs)
                assert theirs.logprob - rival[mine.token] < 0.3, (mine, theirs)
                break
            assert abs(mine.logprob - theirs.logprob) < 0.15, (mine, theirs)


def test_sequences_run_together(batching):
    url = batching.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True, **LONG}
    streams = [_Stream(url, body), _Stream(url, body)]
    try:
        for stream in streams:
            stream.until_content()  # both produce tokens: neither waits for the other
        health = batching.health()
        assert health["active"] == 2 and health["queue_depth"] == 0
        assert health["engine"] == "batching" and health["parallel"] == 3
    finally:
        for stream in streams:
            stream.close()
    batching.wait_idle(within=2)


def test_cancel_frees_the_sequence_and_the_others_go_on(batching):
    url = batching.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True, **LONG}
    dropped = _Stream(url, body)
    kept = _Stream(url, {**body, "max_tokens": 40})
    try:
        dropped.until_content()
        kept.until_content()
        dropped.close()
        rest = [line for line in kept.lines if line]
        assert rest[-1] == "data: [DONE]"
        assert '"finish_reason":"length"' in "".join(rest)
    finally:
        dropped.close()
        kept.close()
    assert batching.wait_idle(within=1.0) < 1.0


def test_n_choices_take_n_sequences_and_a_cancel_frees_them_all(batching):
    url = batching.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True,
            "n": 3, **LONG}
    first = _Stream(url, body)
    second = _Stream(url, body)
    try:
        first.until_content()  # its three choices hold all three sequences
        assert second.response.status_code == 200
        health = batching.health()
        assert health["active"] == 1 and health["queue_depth"] == 1
        first.close()
        second.until_content()  # all three freed: the next three choices start
        assert batching.health()["active"] == 1
    finally:
        first.close()
        second.close()
    batching.wait_idle(within=2)


def test_queue_full_counts_only_jobs_that_cannot_start(batching):
    url = batching.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "stream": True, **LONG}
    opened = []
    try:
        for _ in range(3):  # all three sequences busy
            opened.append(_Stream(url, body))
            opened[-1].until_content()
        for _ in range(3):  # wait: the queue holds three
            opened.append(_Stream(url, body))
            assert opened[-1].response.status_code == 200
        r = httpx.post(url, json=body, timeout=30)
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        health = batching.health()
        assert health["active"] == 3 and health["queue_depth"] == 3
    finally:
        for stream in opened:
            stream.close()
    batching.wait_idle(within=2)


def test_prefix_reuse_for_a_shared_system_prompt_and_the_next_turn(batching):
    client = batching.client()

    def ask(messages: list[dict]):
        return client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                              temperature=0)

    first = ask([SYSTEM, *user("What is the sky's colour?")])
    # The next turn of the conversation reuses its whole prompt and answer.
    turn = [SYSTEM, *user("What is the sky's colour?"),
            {"role": "assistant", "content": first.choices[0].message.content},
            *user("And at night?")]
    second = ask(turn)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    # Concurrent requests with the same system prompt reuse it, whichever came first.
    with ThreadPoolExecutor(3) as pool:
        others = list(pool.map(lambda q: ask([SYSTEM, *user(q)]),
                               ["Grass?", "Snow?", "Coal?"]))
    for r in others:
        assert 150 < r.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens
    assert batching.health()["cached_sequences"] >= 1


def test_health_and_metrics_report_the_batching_figures(batching):
    url = batching.url + "/v1/chat/completions"
    body = {"model": "m", "messages": user("Tell me a long story."), "max_tokens": 24,
            "logit_bias": {"2": -100}}
    threads = [threading.Thread(target=httpx.post, args=(url,), kwargs={"json": body,
                                                                       "timeout": 60})
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health = batching.health()
    assert health["tokens_per_second"] > 0 and 0 < health["kv_cache_usage"] <= 1
    values = _metrics(batching)
    assert values["llm_worker_steps_total"] >= 24
    assert 0 < values["llm_worker_decode_seconds_total"] <= values["llm_worker_step_seconds_total"]
    assert values["llm_worker_cached_sequences"] >= 1
    assert values["llm_worker_tokens_per_second"] > 0
    # Placement and compaction keep every step to one pass (this module's earlier tests
    # leave cached prefixes between the ids).
    assert values["llm_worker_split_steps_total"] == 0
    assert values["llm_worker_compactions_total"] >= 0


@pytest.mark.parametrize(("cache_slots", "kept"), [(None, False), (1, True)])
def test_a_full_house_evicts_idle_prefixes_unless_cache_slots_keep_them(cache_slots, kept):
    """By default the ids are the running ones (the KV memory of llama-server's slots): a
    finished conversation stays cached on its idle id, and gives it up when every id is
    needed; `--cache-slots 1` keeps one id more for it."""
    flags = ("--cache-slots", str(cache_slots)) if cache_slots is not None else ()
    server = WorkerProcess("--engine", "batching", "--parallel", "2", *flags).start()
    try:
        client = server.client()

        def ask(messages: list[dict], max_tokens: int = 8):
            return client.chat.completions.create(model="m", messages=messages,
                                                  max_tokens=max_tokens, temperature=0)

        first = ask([SYSTEM, *user("What is the sky's colour?")])
        turn = [SYSTEM, *user("What is the sky's colour?"),
                {"role": "assistant", "content": first.choices[0].message.content},
                *user("And at night?")]
        # Both ids busy at once, with prompts sharing nothing with the conversation past
        # the chat template's first tokens.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda q: ask(user(q), 24), ["Count to ten.", "Name some fish."]))
        cached = ask(turn).usage.prompt_tokens_details.cached_tokens
        assert (cached >= first.usage.prompt_tokens) is kept, cached
    finally:
        server.stop()
