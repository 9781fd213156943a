"""Running one job on a `llama_cpp.Llama`, synchronously, on the thread that owns it.

Generation drives llama.cpp's decode and sampler chain directly instead of `Llama.generate`:
we need a per-request seed and logit bias, the raw logits for logprobs, and a cancel check
after every token. The Llama's own bookkeeping (`input_ids`, `n_tokens`) is kept exact, so
its KV-cache prefix reuse and its own chat handlers keep working on the same context.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals

from llm_gateway.worker.engines.base import (
    Finished,
    Job,
    ModelInfo,
    Piece,
    SamplingParams,
    TokenLogprob,
    TopLogprob,
)
from llm_gateway.worker.engines.text import TextStream

log = logging.getLogger("llm_gateway.worker")

FLASH_ATTN_TYPES = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
                    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}


def new_context(llama: llama_cpp.Llama, **params: object) -> None:
    """Replace the Llama's context by one made with these context parameters changed.

    For settings the `Llama` constructor does not offer (sequence count, KV layout, flash
    attention "auto"). The old context is freed first, so the two never hold memory together;
    a LoRA adapter is applied again; the Llama's token bookkeeping is reset.
    """
    context_params = llama.context_params
    for name, value in params.items():
        setattr(context_params, name, value)
    llama._ctx.close()
    llama._ctx = _internals.LlamaContext(model=llama._model, params=context_params,
                                         verbose=False)
    llama._stack.callback(llama._ctx.close)
    apply_lora(llama, llama._ctx)
    llama.reset()


def apply_lora(llama: llama_cpp.Llama, ctx: _internals.LlamaContext) -> None:
    """Apply the Llama's LoRA adapter, if it has one, to a context made on its model."""
    adapter = getattr(llama, "_lora_adapter", None)
    if adapter is not None:
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(llama.lora_scale)
        if llama_cpp.llama_set_adapters_lora(ctx.ctx, adapters, 1, scales):
            raise RuntimeError("could not apply the LoRA adapter to the new context")


WARM_UP_TOKENS = 16  # a prompt-sized batch: on a GPU, the kernels of prompts (not only of
# single tokens) are loaded then too


def warm_up(llama: llama_cpp.Llama) -> float:
    """Decode a short prompt and one token in sequence 0, then empty the cache; the seconds it
    took. A context's first decode can cost far more than the next: on a GPU its kernels are
    loaded then, and weights not yet read from a cold disk are paged in from the mapped file
    (on this CPU, with the file cached, it costs nothing to speak of). Done before the worker
    says it is ready, its first request does not pay it. A model that cannot decode this way
    (an encoder) is left as it is."""
    started = time.perf_counter()
    ctx = llama._ctx.ctx
    n = max(1, min(WARM_UP_TOKENS, llama.n_batch, llama.n_ctx() - 1))
    token = max(llama.token_bos(), 0)  # (no BOS: -1)
    batch = llama_cpp.llama_batch_init(n, 0, 1)
    try:
        for size, first in ((n, 0), (1, n)):
            for i in range(size):
                batch.token[i], batch.pos[i] = token, first + i
                batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                batch.logits[i] = i == size - 1
            batch.n_tokens = size
            if llama_cpp.llama_decode(ctx, batch) != 0:
                log.warning("the warm-up decode failed; the first request will be slower")
                break
        llama_cpp.llama_synchronize(ctx)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), False)  # (cells only)
        llama.reset()
    seconds = time.perf_counter() - started
    log.info("warmed up in %.2f s", seconds)
    return seconds


def model_info(llama: llama_cpp.Llama, embedding_tokens: int = 0) -> ModelInfo:
    """The `ModelInfo` of a loaded `llama`, for the request layer.

    `embedding_tokens`: the longest input the engine's embedding context takes; 0: none.
    """
    model = llama._model

    def text_of(token: int) -> str:
        return model.token_get_text(token) if token >= 0 else ""

    def tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        return llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    return ModelInfo(
        n_ctx=llama.n_ctx(),
        n_vocab=llama.n_vocab(),
        n_embd=llama.n_embd(),
        max_embedding_tokens=embedding_tokens,
        embedding=embedding_tokens > 0,
        metadata=dict(llama.metadata),
        bos_token=text_of(llama.token_bos()),
        eos_token=text_of(llama.token_eos()),
        bos_id=llama.token_bos(),
        tokenize=tokenize,
        detokenize=lambda tokens: llama.detokenize(list(tokens)),
    )


class Vocab:
    """Token pieces, cached: llama.cpp's detokenizer is a C call per token."""

    def __init__(self, llama: llama_cpp.Llama) -> None:
        self._vocab = llama._model.vocab
        self._pieces: dict[tuple[int, bool], bytes] = {}

    def piece(self, token: int, special: bool = False) -> bytes:
        key = (token, special)
        found = self._pieces.get(key)
        if found is None:
            found = self._pieces[key] = self._to_piece(token, special)
        return found

    def _to_piece(self, token: int, special: bool) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n  # too small: llama.cpp says how much it needs

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))


def build_sampler(
    llama: llama_cpp.Llama, sampling: SamplingParams, grammar: str | None, seed: int
) -> _internals.LlamaSampler:
    """llama.cpp's sampler chain for one request, in llama-server's order."""
    chain = _internals.LlamaSampler()
    n_vocab = llama.n_vocab()
    if sampling.logit_bias:
        chain.add_logit_bias(n_vocab, dict(sampling.logit_bias))
    if (sampling.presence_penalty or sampling.frequency_penalty
            or sampling.repeat_penalty != 1.0):
        # The penalty sampler only sees accepted (generated) tokens, as OpenAI's penalties do.
        chain.add_penalties(n_vocab, llama.n_ctx(), sampling.repeat_penalty,
                            sampling.frequency_penalty, sampling.presence_penalty)
    if grammar is not None:
        sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError("the grammar could not be parsed")
        llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)
    if sampling.temperature <= 0:
        chain.add_greedy()
        return chain
    if sampling.top_k > 0:
        chain.add_top_k(sampling.top_k)
    if sampling.top_p < 1.0:
        chain.add_top_p(sampling.top_p, 1)
    if sampling.min_p > 0:
        chain.add_min_p(sampling.min_p, 1)
    chain.add_temp(sampling.temperature)
    chain.add_dist(seed)
    return chain


def reuse_prefix(llama: llama_cpp.Llama, tokens: Sequence[int]) -> int:
    """Keep the KV cache for the longest prefix the context already holds; return its length.

    At least the last two prompt tokens are evaluated again: sampling needs fresh logits,
    and a lone token's logits round differently from a fresh run's (see batch_prefix.best).
    """
    held = llama.n_tokens
    if held == 0:
        return 0
    limit = min(held, len(tokens) - 2)
    if limit > 0:
        same = llama.input_ids[:limit] == np.asarray(tokens[:limit], dtype=np.intc)
        common = limit if same.all() else int(np.argmin(same))
        if common > 0 and llama._ctx.kv_cache_seq_rm(-1, common, -1):
            llama.n_tokens = common
            return common
    llama.reset()
    return 0


def token_logprob(llama: llama_cpp.Llama, vocab: Vocab, token: int, top: int,
                  index: int = -1) -> TokenLogprob:
    """The token's log-probability under the model (before sampling settings), and the top n.

    `index` is the batch position whose logits to read (the last one by default).
    """
    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(index),
                                   shape=(llama.n_vocab(),))
    logits = logits.astype(np.float64)
    peak = logits.max()
    logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
    alternatives: tuple[TopLogprob, ...] = ()
    if top > 0:
        best = np.argpartition(-logprobs, top)[:top]
        best = best[np.argsort(-logprobs[best])]
        alternatives = tuple(_top(vocab, int(t), float(logprobs[t])) for t in best)
    piece = vocab.piece(token, special=True)
    return TokenLogprob(piece.decode("utf-8", "replace"), piece, float(logprobs[token]),
                        alternatives)


def _top(vocab: Vocab, token: int, logprob: float) -> TopLogprob:
    piece = vocab.piece(token, special=True)
    return TopLogprob(piece.decode("utf-8", "replace"), piece, logprob)


def generate(
    llama: llama_cpp.Llama,
    vocab: Vocab,
    job: Job,
    emit: Callable[[Piece], None],
    cancelled: Callable[[], bool],
    default_seed: int,
) -> Finished:
    prompt = job.prompt if isinstance(job.prompt, list) else llama.tokenize(
        job.prompt.encode("utf-8"), add_bos=True, special=True)
    n_ctx = llama.n_ctx()
    if not prompt or len(prompt) + 1 > n_ctx:
        raise ValueError(f"prompt of {len(prompt)} tokens does not fit a context of {n_ctx}")
    seed = job.seed if job.seed is not None else default_seed
    sampler = build_sampler(llama, job.sampling, job.grammar, seed & 0xFFFFFFFF)
    if job.seed is not None:
        # Reproducible: logits differ in the last bits between a reused and a recomputed KV
        # cache, enough to change a sampled token; so a seeded prompt is always recomputed.
        llama.reset()
        cached = 0
    else:
        cached = reuse_prefix(llama, prompt)
    rest = prompt[cached:]
    for start in range(0, len(rest), llama.n_batch):
        if cancelled():
            # What was evaluated is a valid prefix; the next job may reuse it.
            return Finished("cancelled", len(prompt), 0, cached)
        llama.eval(rest[start:start + llama.n_batch])

    text = TextStream(job.stop)
    generated = 0
    finish = "length"
    while True:
        if cancelled():
            finish = "cancelled"
            break
        if job.max_tokens is not None and generated >= job.max_tokens:
            break
        token = sampler.sample(llama._ctx, -1)
        if vocab.is_eog(token):
            finish = "stop"
            break
        logprob = token_logprob(llama, vocab, token, job.top_logprobs) if job.logprobs else None
        generated += 1
        emit(Piece(text.push(vocab.piece(token)), token, logprob))
        if text.stopped:
            finish = "stop"
            break
        if len(prompt) + generated >= n_ctx:
            break  # prompt and completion together fill the context
        if job.max_tokens is not None and generated >= job.max_tokens:
            break  # no need to evaluate a token nothing will follow
        llama.eval([token])
    rest_text = text.flush()
    if rest_text and finish != "cancelled":
        emit(Piece(rest_text, None))
    return Finished(finish, len(prompt), generated, cached)
