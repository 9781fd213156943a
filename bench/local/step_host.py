#!/usr/bin/env python3
"""The batching engine's host work per step, without a model: what is left of a GPU step
when the decode and the sampling cost nothing (issue 17, item 6).

The real scheduler (`batch_scheduler.Scheduler`) drives a decoder whose decode returns at once
and whose chains return the next token of a fixed text at once, as llama.cpp's backend
sampling hands out tokens picked inside the decode. Everything else is the engine's own:
building the batch, taking each token (its piece, the text stream with its stop strings, the
event), ending sequences, compaction, and handing a step's events to the event loop. Printed:
microseconds of host work per step and per token at 1, 8, 32 and 64 sequences, against an
8B-class GPU step (~20 ms at 64 sequences on an H200, issue 17); then the same with the
decode overlapping the host work (`--decode-overlap`, on by default on a GPU): how much of
it a decode under way would hide (text and events made meanwhile), and what stays exposed.

    python bench/local/step_host.py [--steps 400] [--sequences 1,8,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llm_gateway.worker.engines.base import Job, SamplingParams, TokenLogprob
from llm_gateway.worker.engines.batch_scheduler import Scheduler
from llm_gateway.worker.engines.batching import _deliver_all
from llm_gateway.worker.engines.decoder import Decoder, Sampler, Span

WORDS = [w.encode() for w in (" the", " history", " of", " bread", " begins", " in", " the",
                              " fertile", " crescent", ",", " where", " people", " first",
                              " ground", " grain", " into", " flour", ".")]
EOG = 0


class _Chain(Sampler):
    __slots__ = ("_next",)

    def __init__(self, seed: int) -> None:
        self._next = itertools.cycle(range(1, len(WORDS) + 1)).__next__

    def sample(self, index: int) -> int:
        return self._next()


class _Instant(Decoder):
    """Decodes nothing, at once; a token's piece is a word."""

    n_batch = 512

    def __init__(self, overlaps: bool) -> None:
        self.overlaps = overlaps

    def decode(self, spans: Sequence[Span]) -> bool:
        return True

    def copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        pass

    def remove(self, seq_id: int, p0: int = -1, p1: int = -1) -> None:
        pass

    def clear(self) -> None:
        pass

    def sampler(self, sampling: SamplingParams, grammar: str | None, seed: int,
                offload: bool = False) -> Sampler:
        return _Chain(seed)

    def piece(self, token: int) -> bytes:
        return WORDS[token - 1]

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def logprob(self, token: int, top: int, index: int) -> TokenLogprob:
        raise NotImplementedError


class _Work:
    """A queued request as the engine sees it; its events go to a loop that drops them."""

    __slots__ = ("cancelled", "loop", "sink")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.cancelled = False
        self.loop = loop
        self.sink = _drop


def _drop(item: object) -> None:
    pass


def measure(sequences: int, steps: int, loop: asyncio.AbstractEventLoop,
            overlaps: bool = False) -> tuple[float, float, float]:
    """Median host microseconds per step, per generated token, and per step outside the
    decode's window (all of it without overlap), with `sequences` running (each ends after
    128 tokens and a new one takes its place, as under steady load)."""
    scheduler = Scheduler(_Instant(overlaps), sequences + 4, 4096, unified=False)
    prompt = list(range(1, 40))
    seed = itertools.count()

    def admit() -> None:
        job = Job(prompt=prompt, max_tokens=128, stop=["\n\n"])
        scheduler.admit(job, _Work(loop), prompt, next(seed))

    for _ in range(sequences):
        admit()
    times, tokens, exposed = [], [], []
    out: list = []

    def hand_on() -> None:  # as the engine does, during the decode when it overlaps
        _deliver_all(out)
        out.clear()

    for _ in range(steps):
        started = time.perf_counter()
        before, hidden = scheduler.generated_tokens, scheduler.overlap_seconds
        while len(scheduler.running) < sequences:
            admit()
        scheduler.step(out, hand_on)
        hand_on()
        took = time.perf_counter() - started
        times.append(took)
        exposed.append(took - (scheduler.overlap_seconds - hidden))
        tokens.append(scheduler.generated_tokens - before)
    loop.run_until_complete(asyncio.sleep(0))  # (the handed-over events, dropped)
    step = statistics.median(times)
    per_token = sum(times) / max(1, sum(tokens))
    return step * 1e6, per_token * 1e6, statistics.median(exposed) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--sequences", default="1,8,32,64")
    args = p.parse_args(argv)
    loop = asyncio.new_event_loop()
    counts = [int(s) for s in args.sequences.split(",")]
    print(f"{'sequences':>9} {'host us/step':>13} {'us/token':>9} {'% of a 20 ms step':>18}")
    for n in counts:
        measure(n, 50, loop)  # warm-up
        step, per_token, _ = measure(n, args.steps, loop)
        print(f"{n:>9} {step:>13.0f} {per_token:>9.1f} {step / 200:>17.1f}%")
    print(f"\nwith the decode overlapping the host work:\n"
          f"{'sequences':>9} {'host us/step':>13} {'exposed us':>11} {'hidden':>7} "
          f"{'exposed % of 20 ms':>19}")
    for n in counts:
        measure(n, 50, loop, overlaps=True)
        step, _, exposed = measure(n, args.steps, loop, overlaps=True)
        print(f"{n:>9} {step:>13.0f} {exposed:>11.0f} {1 - exposed / step:>7.0%} "
              f"{exposed / 200:>18.1f}%")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
