"""`LlamaDecoder` on the real default model: copies between the split cache's streams, and
sampling a large step on several threads.

A copy moves only the cells the source occupies (its per-sequence state), at once, so it
costs what the prefix holds rather than a whole stream of n_ctx cells; the copy must give
the destination exactly the asked range, and logits equal to the source's.
"""

from __future__ import annotations

from collections.abc import Iterator

import llama_cpp
import numpy as np
import pytest

from llm_gateway.worker.config import WorkerConfig
from llm_gateway.worker.engines.base import SamplingParams
from llm_gateway.worker.engines.batch_sampling import StepSampler
from llm_gateway.worker.engines.decoder import Span
from llm_gateway.worker.engines.llama_decoder import LlamaDecoder
from llm_gateway.worker.models import load_llama

from worker_support import default_model_path

N_CTX = 512  # per sequence


@pytest.fixture(scope="module")
def decoder() -> Iterator[LlamaDecoder]:
    # On the CPU: the occupied-cells copy is the host-memory path (a GPU keeps seq_cp).
    config = WorkerConfig(model="default", n_ctx=N_CTX, n_threads=1, n_gpu_layers=0,
                          embeddings=False)
    llama = load_llama(default_model_path(), config)
    dec, n_ctx = LlamaDecoder.batched(llama, 4, unified=False)
    assert n_ctx == N_CTX
    yield dec
    dec.close()
    llama.close()


def _pos_max(dec: LlamaDecoder, seq_id: int) -> int:
    return int(llama_cpp.llama_memory_seq_pos_max(dec._mem, seq_id))


def _logits(dec: LlamaDecoder, spans: list[Span]) -> list[np.ndarray]:
    assert dec.decode(spans)
    n_vocab = dec.llama.n_vocab()
    out, index = [], -1
    for span in spans:
        index += len(span.tokens)
        ptr = llama_cpp.llama_get_logits_ith(dec._ctx, index)
        out.append(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy())
    return out


def test_a_copy_holds_the_asked_prefix_and_continues_like_its_source(decoder):
    dec = decoder
    dec.clear()
    prompt = dec.llama.tokenize(b"The history of bread begins with the first farmers, who",
                                add_bos=True)
    assert dec.decode([Span(0, 0, prompt, True)])
    dec.copy(0, 2, -1, -1)  # another stream: the cell data moves
    assert _pos_max(dec, 2) == len(prompt) - 1
    dec.copy(0, 3, -1, len(prompt) - 3)  # a prefix only
    assert _pos_max(dec, 3) == len(prompt) - 4
    # Both copies continue as the source does: the same token at the same position.
    nxt = [prompt[-1] + 1]
    a, b = _logits(dec, [Span(0, len(prompt), nxt, True), Span(2, len(prompt), nxt, True)])
    assert int(np.argmax(a)) == int(np.argmax(b))
    assert np.allclose(a, b, atol=1e-3)
    tail = prompt[-3:]
    c, d = _logits(dec, [Span(1, 0, prompt[:-3] + tail, True),
                         Span(3, len(prompt) - 3, tail, True)])
    assert int(np.argmax(c)) == int(np.argmax(d))
    assert np.allclose(c, d, atol=1e-2)


def test_copying_an_empty_sequence_leaves_the_destination_empty(decoder):
    dec = decoder
    dec.clear()
    prompt = dec.llama.tokenize(b"Salt was once traded", add_bos=True)
    assert dec.decode([Span(1, 0, prompt, True)])
    dec.copy(0, 1)  # 0 holds nothing: 1 is emptied, as after a whole-stream copy
    assert _pos_max(dec, 1) == -1


def test_a_large_step_samples_on_threads_with_the_same_tokens(decoder):
    dec = decoder
    dec.clear()
    prompts = [dec.llama.tokenize(f"Story {i}: once upon a time".encode(), add_bos=True)
               for i in range(4)]
    assert dec.decode([Span(i, 0, p, True) for i, p in enumerate(prompts)])
    ends = list(np.cumsum([len(p) for p in prompts]) - 1)
    sampling = SamplingParams(temperature=0.9, top_p=0.95, top_k=40)

    def picks() -> list:
        # 5 seeded chains per logits row (as n choices would): 20 picks over 3 threads
        return [(dec.sampler(sampling, None, seed), int(ends[seed % 4])) for seed in range(20)]

    alone = [sampler.sample(index) for sampler, index in picks()]
    step = StepSampler(3)  # as on a machine with 4+ cores
    try:
        dec.logits_ready()
        spread = step.sample(picks())
    finally:
        step.close()
    assert spread == alone
    assert len(set(alone)) > 1  # seeds differ: a test that could tell shares apart
