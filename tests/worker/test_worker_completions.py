"""/v1/completions on a real worker."""

from __future__ import annotations

import openai
import pytest

EOS = {"2": -100}


def test_completion_non_stream(client, vocab):
    prompt = "The capital of France is"
    r = client.completions.create(model="base", prompt=prompt, max_tokens=5, logit_bias=EOS)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "base"
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens == len(vocab.tokenize(prompt.encode(), special=True))
    assert r.system_fingerprint == "lgw-local"


def test_completion_stream_and_usage(client):
    stream = client.completions.create(model="m", prompt="Once upon a time", max_tokens=4,
                                       logit_bias=EOS, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length" and chunks[-2].choices[0].text == ""
    assert "".join(c.choices[0].text for c in chunks[:-1])


def test_completion_from_token_ids_with_logprobs_and_echo(client, vocab):
    tokens = vocab.tokenize(b"One, two, three,", special=True)
    r = client.completions.create(model="m", prompt=tokens, max_tokens=3, logprobs=2,
                                  echo=True, logit_bias=EOS)
    choice = r.choices[0]
    assert choice.text.startswith("One, two, three,")
    assert r.usage.prompt_tokens == len(tokens)
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 3
    assert all(len(top) == 2 for top in lp.top_logprobs)
    assert lp.text_offset[0] == len("One, two, three,")


def test_several_prompts_are_refused(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="m", prompt=["a", "b"], max_tokens=1)
    assert err.value.body["param"] == "prompt"
