"""Load generation: streamed requests, their timings, and runs summarized."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from settings import MAX_TOKENS, MODEL_NAME, PROMPT, TTFT_MAX_TOKENS, TTFT_PROMPT


@dataclass
class Sample:
    """One streamed request, as the client saw it (times in seconds, perf_counter)."""

    ok: bool = False
    error: str = ""
    start: float = 0.0
    first: float | None = None  # first chunk with non-empty content
    last: float | None = None  # last chunk with content
    end: float = 0.0
    tokens: int = 0
    tokens_from: str = ""  # "usage" (the include_usage chunk) or "chunks" (content chunks)
    prompt_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first is None else (self.first - self.start) * 1000

    @property
    def decode_tps(self) -> float | None:
        """Tokens per second after the first one, within this request."""
        if self.first is None or self.last is None or self.last <= self.first or self.tokens < 2:
            return None
        return (self.tokens - 1) / (self.last - self.first)

    @property
    def e2e_tps(self) -> float | None:
        """Tokens over the whole request, first byte sent to last byte read."""
        return self.tokens / (self.end - self.start) if self.ok and self.end > self.start else None


def request_body(i: int, max_tokens: int, banned: list[int], ttft: bool = False) -> dict[str, Any]:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user",
                      "content": (TTFT_PROMPT if ttft else PROMPT).format(i=i)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        # OpenAI's own way to keep a model talking: -100 bans a token. Both servers honour it;
        # neither knows vLLM's `ignore_eos`.
        "logit_bias": {str(t): -100 for t in banned},
    }


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Sample:
    s = Sample(start=time.perf_counter())
    chunks = 0
    usage_tokens: int | None = None
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread())[:300].decode(errors="replace")
                s.error = f"HTTP {resp.status_code}: {text}"
                return s
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    s.error = f"stream error: {json.dumps(event['error'])[:300]}"
                    return s
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
                    s.prompt_tokens = event["usage"].get("prompt_tokens")
                for choice in event.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter()
                        chunks += 1
                        s.last = now
                        if s.first is None:
                            s.first = now
                    if choice.get("finish_reason"):
                        s.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, ValueError) as exc:
        s.error = f"{type(exc).__name__}: {exc}"
        return s
    s.end = time.perf_counter()
    if usage_tokens is not None:
        s.tokens, s.tokens_from = usage_tokens, "usage"
    else:
        s.tokens, s.tokens_from = chunks, "chunks"
    s.ok = s.first is not None
    if not s.ok:
        s.error = "no content in the stream"
    return s


@dataclass
class Run:
    """Streams at one concurrency: each stream sends its requests back to back."""

    concurrency: int
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0
    tokens: int = 0
    tokens_per_request: float = 0.0
    tokens_from: str = ""
    agg_tps: float = 0.0  # all tokens / wall time
    e2e_tps_p50: float | None = None  # per request: tokens / request time, median
    decode_tps_p50: float | None = None  # per request, after the first token, median
    ttft_p50_ms: float | None = None  # under this load (queueing included)
    finish_reasons: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None  # CPU of the measured process (the gateway's own)
    foreign_cores: float = 0.0


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    vals = sorted(values)
    return vals[min(len(vals) - 1, max(0, math.ceil(q * len(vals)) - 1))]


class Counter:
    """Unique request numbers: every prompt differs, so no server answers from a warm prefix
    beyond the chat template's shared start."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


async def load_run(url: str, concurrency: int, per_stream: int, banned: list[int],
                   counter: Counter) -> tuple[list[Sample], float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(300.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def stream() -> list[Sample]:
            out = []
            for _ in range(per_stream):
                out.append(await stream_once(client, url,
                                             request_body(counter.next(), MAX_TOKENS, banned)))
            return out

        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return [s for r in results for s in r], wall


def summarize(concurrency: int, samples: list[Sample], wall: float) -> Run:
    ok = [s for s in samples if s.ok]
    bad = [s for s in samples if not s.ok]
    run = Run(concurrency=concurrency, requests=len(samples), errors=len(bad),
              first_error=bad[0].error if bad else "", wall_s=wall)
    run.tokens = sum(s.tokens for s in ok)
    run.tokens_per_request = run.tokens / len(ok) if ok else 0.0
    run.tokens_from = ",".join(sorted({s.tokens_from for s in ok}))
    run.agg_tps = run.tokens / wall if wall > 0 else 0.0
    run.e2e_tps_p50 = median([s.e2e_tps for s in ok])
    run.decode_tps_p50 = median([s.decode_tps for s in ok])
    run.ttft_p50_ms = median([s.ttft_ms for s in ok])
    for s in ok:
        key = s.finish_reason or "none"
        run.finish_reasons[key] = run.finish_reasons.get(key, 0) + 1
    return run


async def ttft_series(targets: dict[str, str], n: int, banned: list[int],
                      counter: Counter) -> dict[str, list[Sample]]:
    """``n`` sequential single-stream requests per target, the targets taken in turn.

    Interleaving puts both sides of a comparison under the same conditions (the same worker
    process, the same background load), so their difference is not run-to-run drift.
    """
    out: dict[str, list[Sample]] = {name: [] for name in targets}
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        for round_no in range(n):
            names = list(targets)
            if round_no % 2:
                names.reverse()  # neither side always goes first
            for name in names:
                body = request_body(counter.next(), TTFT_MAX_TOKENS, banned, ttft=True)
                out[name].append(await stream_once(client, targets[name], body))
    return out
