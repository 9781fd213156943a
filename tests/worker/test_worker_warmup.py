"""The warm-up decode at load (`--no-warmup` skips it): it happens before the worker says it is
ready, and leaves nothing behind: the first request gets the answer a worker without it
gives, its usage counts only its own tokens, and the cache holds none of the warm-up's."""

from __future__ import annotations

import pytest

from worker_support import WorkerProcess, metric, user

PROMPT = "Name three colours of the rainbow."


def _first_answer(server: WorkerProcess) -> tuple[str | None, int, int]:
    r = server.client().chat.completions.create(model="m", messages=user(PROMPT),
                                                max_tokens=16, temperature=0)
    assert r.usage is not None
    return r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens


@pytest.mark.parametrize("engine", ["batching", "simple"])
def test_the_warm_up_runs_at_load_and_leaves_no_trace(engine: str) -> None:
    answers = {}
    for flags in ((), ("--no-warmup",)):
        server = WorkerProcess("--engine", engine, "--parallel", "2", *flags).start()
        try:
            warmup = metric(server, "llm_worker_warmup_seconds")
            assert (warmup > 0) == (not flags), warmup
            # Nothing of the warm-up counted or kept before the first request.
            assert metric(server, "llm_worker_prompt_tokens_total") == 0
            assert metric(server, "llm_worker_generated_tokens_total") == 0
            if engine == "simple":  # (its usage is the context's own token count)
                assert metric(server, "llm_worker_kv_cache_usage_ratio") == 0
            answers[flags] = _first_answer(server)
            _, prompt_tokens, completion_tokens = answers[flags]
            assert metric(server, "llm_worker_prompt_tokens_total") == prompt_tokens
            assert metric(server, "llm_worker_generated_tokens_total") == completion_tokens
            assert _first_answer(server) == answers[flags]  # and again, from the cache
        finally:
            server.stop()
    assert answers[()] == answers[("--no-warmup",)]
    assert answers[()][0]
