"""n > 1 choices and streamed logprobs on local models, through the gateway with the openai SDK.

The batching engine evaluates the prompt once and forks it into n sequences, choice i sampled
with seed + i; the simple engine answers n > 1 with a 400. Streamed logprobs come on each
chunk, for that chunk's tokens, on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from llm_gateway.testing import FakeUpstream

from local_support import LocalGateway, chat_body, start_gateway

BATCHING, SIMPLE = "smol-batching", "smol-simple"
NO_EOS = {"2": -100}  # <|im_end|> banned: every choice runs to max_tokens


@pytest.fixture(scope="module")
def engines(fake: FakeUpstream) -> Iterator[LocalGateway]:
    gateway = start_gateway(fake, {BATCHING: {"workers": 1, "parallel": 4},
                                   SIMPLE: {"workers": 1, "engine": "simple"}})
    try:
        gateway.wait_ready(BATCHING)
        gateway.wait_ready(SIMPLE)
        yield gateway
    finally:
        gateway.stop()


def story(model: str = BATCHING, **extra) -> dict:
    body = chat_body("Tell me a story about a fox.", max_tokens=5, model=model)
    return {**body, "temperature": 1.0, "seed": 11, "logit_bias": NO_EOS, **extra}


# -- n > 1 on the batching engine ----------------------------------------------------------------


def test_two_choices_whole_count_the_prompt_once_and_repeat_with_their_seeds(engines):
    client = engines.client()
    one = client.chat.completions.create(**story())
    two = client.chat.completions.create(**story(n=2))
    assert [c.index for c in two.choices] == [0, 1]
    texts = [c.message.content for c in two.choices]
    assert all(texts) and texts[0] != texts[1]  # seeds 11 and 12 sample differently
    assert [c.finish_reason for c in two.choices] == ["length", "length"]
    assert two.usage.prompt_tokens == one.usage.prompt_tokens  # evaluated once
    assert two.usage.completion_tokens == 2 * 5 == 2 * one.usage.completion_tokens
    again = client.chat.completions.create(**story(n=2))
    assert [c.message.content for c in again.choices] == texts


def test_two_choices_streamed_interleave_with_their_index(engines):
    client = engines.client()
    whole = client.chat.completions.create(**story(n=2))
    chunks = list(client.chat.completions.create(
        **story(n=2, stream=True, stream_options={"include_usage": True})))
    assert all(len(c.choices) == 1 for c in chunks[:-1]) and chunks[-1].choices == []
    order = [c.choices[0].index for c in chunks[:-1] if c.choices[0].delta.content]
    assert sorted(set(order)) == [0, 1] and order != sorted(order)  # interleaved
    for i, choice in enumerate(whole.choices):  # the same seeds give the same choices
        mine = [c.choices[0] for c in chunks[:-1] if c.choices[0].index == i]
        assert mine[0].delta.role == "assistant"
        assert "".join(c.delta.content or "" for c in mine) == choice.message.content
        assert [c.finish_reason for c in mine if c.finish_reason] == ["length"]
    usage = chunks[-1].usage
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.completion_tokens == 10


def test_two_legacy_completions_streamed_and_whole(engines):
    client = engines.client()
    body = {"model": BATCHING, "prompt": "The fox said", "max_tokens": 4, "seed": 5,
            "temperature": 1.0, "logit_bias": NO_EOS, "n": 2}
    whole = client.completions.create(**body)
    assert [c.index for c in whole.choices] == [0, 1] and whole.usage.completion_tokens == 8
    chunks = list(client.completions.create(**body, stream=True,
                                            stream_options={"include_usage": True}))
    for i, choice in enumerate(whole.choices):
        texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].index == i]
        assert "".join(texts) == choice.text
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_n_beyond_the_engine_is_a_clear_400(engines):
    client = engines.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**story(n=5))  # parallel is 4
    assert err.value.body["param"] == "n" and "at most 4" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**story(SIMPLE, n=2))
    assert err.value.body["param"] == "n" and err.value.body["code"] == "unsupported_value"
    assert "one choice per request" in err.value.body["message"]


# -- logprobs in streams, both engines -----------------------------------------------------------


@pytest.mark.parametrize("model", [BATCHING, SIMPLE])
def test_chat_streams_carry_each_chunks_logprobs(engines, model):
    client = engines.client()
    body = story(model, logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**body).choices[0].logprobs.content
    chunks = [c for c in client.chat.completions.create(**{**body, "stream": True})
              if c.choices and c.choices[0].delta.content]
    streamed = []
    for chunk in chunks:
        entries = chunk.choices[0].logprobs.content
        assert "".join(e.token for e in entries) == chunk.choices[0].delta.content
        for e in entries:
            assert bytes(e.bytes).decode() == e.token and e.logprob <= 0
            assert len(e.top_logprobs) == 2
        streamed += entries
    assert [e.token for e in streamed] == [e.token for e in whole] and len(whole) == 5
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in whole])


@pytest.mark.parametrize("model", [BATCHING, SIMPLE])
def test_completion_streams_carry_each_chunks_logprobs(engines, model):
    client = engines.client()
    body = {"model": model, "prompt": "The fox said", "max_tokens": 4, "seed": 5,
            "logit_bias": NO_EOS, "logprobs": 2}
    whole = client.completions.create(**body).choices[0].logprobs
    chunks = [c.choices[0] for c in client.completions.create(**body, stream=True)
              if c.choices and c.choices[0].text]
    tokens, offsets = [], []
    for chunk in chunks:
        lp = chunk.logprobs
        assert "".join(lp.tokens) == chunk.text
        assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.tokens)
        assert all(len(top) == 2 for top in lp.top_logprobs)
        tokens += lp.tokens
        offsets += lp.text_offset
    assert tokens == whole.tokens and offsets == whole.text_offset
    assert all(b - a == len(t) for a, b, t in zip(offsets, offsets[1:], tokens, strict=False))
