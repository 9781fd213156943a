"""Sequence ids of the batching engine's split KV cache: running sequences kept on consecutive
ids (one llama.cpp micro-batch), by placement and by compaction, without losing any state."""

from __future__ import annotations

import asyncio
import random

import pytest

from llm_gateway.worker.engines.batch_slots import Move, compaction, fewest_runs, place, runs

from worker_support import default_model_path


def test_runs_counts_blocks_of_consecutive_ids():
    assert [runs([]), runs([4]), runs([3, 1, 2]), runs([0, 1, 3, 4, 6]), runs([9, 0])] == \
        [0, 1, 1, 3, 2]
    assert fewest_runs({0, 1, 3}, [5, 2, 4]) == [2]
    assert fewest_runs(set(), [5, 2]) == [5, 2]


def test_a_new_sequence_fills_the_hole_and_moves_the_entry_there_to_a_free_id():
    placed = place(running={0, 1, 3}, free=[5], cached_lru=[4, 2], source=-1, take_over=False)
    assert placed.seq_id == 2 and placed.move == (2, 5) and not placed.take_over


def test_a_continued_conversation_is_taken_over_in_place_when_its_id_suits():
    placed = place(running={0, 1}, free=[3, 4], cached_lru=[2], source=2, take_over=True)
    assert (placed.seq_id, placed.take_over, placed.move) == (2, True, None)
    # Far from the block, it is copied next to it instead (the entry stays cached).
    placed = place(running={0, 1}, free=[2, 3], cached_lru=[5], source=5, take_over=True)
    assert (placed.seq_id, placed.take_over) == (2, False)


def test_without_a_free_id_an_older_entry_gives_way():
    placed = place(running={0, 1}, free=[], cached_lru=[5, 2, 3], source=-1, take_over=False)
    assert placed.seq_id == 2 and placed.move == (2, 5) and placed.evict == (5,)
    # The oldest entry itself is simply dropped.
    placed = place(running={0, 1}, free=[], cached_lru=[2, 5], source=-1, take_over=False)
    assert placed.seq_id == 2 and placed.move is None and placed.evict == (2,)


def _apply(moves: list[Move], data: dict[int, str], running: set[int], cached: list[int]
           ) -> tuple[dict[int, str], set[int], list[int]]:
    """Plays the moves as llama.cpp would: metadata at once, buffer copies in order."""
    data, running, cached = dict(data), set(running), list(cached)
    for move in moves:
        if move.kind == "evict":
            cached.remove(move.src)
            data.pop(move.src, None)
            continue
        assert move.dst not in running, "a copy may not land on a running sequence"
        data[move.dst] = data.pop(move.src)
        if move.kind == "entry":
            cached[cached.index(move.src)] = move.dst
        else:
            running.remove(move.src)
            running.add(move.dst)
    return data, running, cached


@pytest.mark.parametrize("seed", range(200))
def test_compaction_leaves_one_block_and_loses_no_sequence(seed):
    rng = random.Random(seed)
    n_ids = rng.randint(3, 16)
    ids = list(range(n_ids))
    rng.shuffle(ids)
    running = set(ids[:rng.randint(0, n_ids - 1)])
    rest = ids[len(running):]
    cached = rest[:rng.randint(0, len(rest))]
    free = set(rest) - set(cached)
    data = {i: f"seq{i}" for i in running} | {i: f"entry{i}" for i in cached}
    moves = compaction(running, n_ids, free, cached)
    if runs(running) <= 1:
        assert moves == []
        return
    after, now_running, now_cached = _apply(moves, data, running, cached)
    assert runs(now_running) == 1 and len(now_running) == len(running)
    assert sorted(after[i] for i in now_running) == sorted(f"seq{i}" for i in running)
    for i in now_cached:  # every entry still cached holds its own state
        assert after[i].startswith("entry")
    assert len(set(now_cached)) == len(now_cached) and not set(now_cached) & now_running
    # Sequences only move into the kept window: as few moves as the window allows.
    assert sum(m.kind == "sequence" for m in moves) == len(running) - max(
        sum(1 for r in running if a <= r < a + len(running))
        for a in range(n_ids - len(running) + 1))


def test_a_sequence_moved_mid_answer_gives_its_answer_alone():
    """Four greedy answers; the second ends early and leaves a hole, so the fourth is moved
    onto its id (a whole-stream copy) while it generates. Every answer must still be the one
    it gives alone, and no step may need more than one micro-batch."""
    from llm_gateway.worker.config import WorkerConfig
    from llm_gateway.worker.engines.base import Finished, Job, SamplingParams
    from llm_gateway.worker.engines.batching import BatchingEngine
    from llm_gateway.worker.models import load_llama

    config = WorkerConfig(model="default", n_ctx=512, n_threads=2)
    prompts = [f"Question {i}: what is the history of {t}?" for i, t in
               enumerate(("bread", "ships", "clocks", "paper"))]
    lengths = [40, 4, 40, 40]

    async def answer(engine: BatchingEngine, prompt: str, max_tokens: int) -> str:
        job = Job(prompt=prompt, sampling=SamplingParams(temperature=0), max_tokens=max_tokens,
                  seed=1)
        text = []
        async for event in await engine.submit(job):
            if isinstance(event, Finished):
                return "".join(text)
            text.append(event.text)
        raise AssertionError("no Finished event")

    async def run() -> tuple[list[str], list[str], int, int]:
        engine = BatchingEngine(lambda: load_llama(default_model_path(), config), parallel=4)
        await engine.start()
        try:
            # A fresh engine places them on ids 0-3, in order; the second leaves id 1 first.
            together = await asyncio.gather(*(answer(engine, p, n) for p, n in
                                              zip(prompts, lengths, strict=True)))
            scheduler = engine._scheduler
            assert scheduler is not None
            compactions, split_steps = scheduler.compactions, scheduler.split_steps
            alone = [await answer(engine, p, n) for p, n in zip(prompts, lengths, strict=True)]
            return alone, list(together), compactions, split_steps
        finally:
            await engine.close()

    alone, together, compactions, split_steps = asyncio.run(run())
    assert compactions >= 1
    assert split_steps == 0
    assert together == alone
