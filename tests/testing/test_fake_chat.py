"""The fake's chat completions and legacy completions, driven by the SDK and plain httpx."""

from __future__ import annotations

import httpx
import openai

from fake_support import chat_body

# --- chat completions -------------------------------------------------------------------------


def test_chat_answer_and_usage(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello fake world"},
        ],
    )
    assert out.id.startswith("chatcmpl-")
    assert out.object == "chat.completion"
    assert out.model == "gpt-4o"
    assert out.choices[0].message.content == "Echo: hello fake world"
    assert out.choices[0].finish_reason == "stop"
    # 5 words over both messages + 3 per message; one completion token per word.
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (11, 4)
    assert out.usage.total_tokens == 15
    assert out.system_fingerprint == "fp_fake"
    assert out.model_extra == {"x_fake_extra": {"kept": True}}


def test_chat_text_parts_max_tokens_and_n(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "one two "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    {"type": "text", "text": "three four"},
                ],
            }
        ],
        max_tokens=3,
        n=2,
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert {c.message.content for c in out.choices} == {"Echo: one two"}
    assert out.choices[1].finish_reason == "length"
    assert out.usage is not None and out.usage.completion_tokens == 6


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(**chat_body())  # type: ignore[arg-type]
    chunks = list(
        client.chat.completions.create(
            **chat_body(),
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage(http: httpx.Client) -> None:
    r = http.post("/chat/completions", json=chat_body(stream=True))
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"choices":[]' not in r.text and '"usage"' not in r.text
    # role chunk + one per word ("Echo:", "hello", "fake", "world") + finish + [DONE]
    assert len(events) == 7


# --- completions, embeddings, models ----------------------------------------------------------


def test_completions(client: openai.OpenAI) -> None:
    out = client.completions.create(model="gpt-4o-mini", prompt=["say this", "ignored"])
    assert out.object == "text_completion"
    assert out.choices[0].text == "Echo: say this"
    assert out.usage is not None and out.usage.prompt_tokens == 2
    stream = client.completions.create(
        model="gpt-4o-mini",
        prompt="say this please",
        stream=True,
        max_tokens=3,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Echo: say this"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
