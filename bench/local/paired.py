"""Two servers measured in alternation, for a one-stream comparison that noise cannot decide.

Measured one after the other, the same server's single-stream rate moves by ±15% from one
run to the next on this shared machine, more than the difference being looked for. Here
both servers run at once (each idles while the other answers), and every round sends the
same fresh prompt to each, one request at a time, in alternating order. Drift and
background load then hit both sides of a round alike; the median of the per-round ratios
is the figure, printed with its range.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

import httpx
from load import Counter, Sample, request_body, stream_once


@dataclass
class Paired:
    rounds: int
    e2e_ratios: list[float]  # per round: tokens/s over the whole request, b / a
    decode_ratios: list[float]  # per round: tokens/s after the first token, b / a
    ttft_ms: tuple[float, float]  # medians, a and b
    errors: list[str]

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @property
    def e2e(self) -> float | None:
        return self._median(self.e2e_ratios)

    @property
    def decode(self) -> float | None:
        return self._median(self.decode_ratios)


async def _rounds(url_a: str, url_b: str, rounds: int, max_tokens: int, banned: list[int],
                  counter: Counter) -> Paired:
    # One client per server: llama-server-style idle closes on one cannot touch the other.
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10)) as ca, \
            httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10)) as cb:
        sides = ((ca, url_a), (cb, url_b))
        for client, url in sides:  # warm-up, not counted
            await stream_once(client, url, request_body(counter.next(), max_tokens, banned))
        e2e: list[float] = []
        decode: list[float] = []
        ttft: tuple[list[float], list[float]] = ([], [])
        errors: list[str] = []
        for r in range(rounds):
            body = request_body(counter.next(), max_tokens, banned)
            order = (0, 1) if r % 2 == 0 else (1, 0)
            got: dict[int, Sample] = {}
            for side in order:
                client, url = sides[side]
                got[side] = await stream_once(client, url, body)
            a, b = got[0], got[1]
            if not (a.ok and b.ok):
                errors.append((a.error or b.error)[:200])
                continue
            if a.e2e_tps and b.e2e_tps:
                e2e.append(b.e2e_tps / a.e2e_tps)
            if a.decode_tps and b.decode_tps:
                decode.append(b.decode_tps / a.decode_tps)
            for side, sample in got.items():
                if sample.ttft_ms is not None:
                    ttft[side].append(sample.ttft_ms)
        medians = (statistics.median(ttft[0]) if ttft[0] else float("nan"),
                   statistics.median(ttft[1]) if ttft[1] else float("nan"))
        return Paired(rounds, e2e, decode, medians, errors)


def measure_paired(base_a: str, base_b: str, rounds: int, max_tokens: int,
                   banned: list[int], counter: Counter) -> Paired:
    path = "/v1/chat/completions"
    return asyncio.run(_rounds(base_a + path, base_b + path, rounds, max_tokens, banned,
                               counter))


def describe(p: Paired, a: str, b: str) -> str:
    def span(values: list[float]) -> str:
        return f"{min(values):.3f}-{max(values):.3f}" if values else "n/a"

    e2e = f"{p.e2e:.3f}" if p.e2e is not None else "n/a"
    decode = f"{p.decode:.3f}" if p.decode is not None else "n/a"
    text = (f"{b} / {a} at 1 stream, paired ({len(p.e2e_ratios)} of {p.rounds} rounds): "
            f"end to end {e2e} (range {span(p.e2e_ratios)}), decode {decode} (range "
            f"{span(p.decode_ratios)}); TTFT p50 {p.ttft_ms[0]:.0f} vs {p.ttft_ms[1]:.0f} ms")
    if p.errors:
        text += f"; {len(p.errors)} failed rounds, first: {p.errors[0]}"
    return text
