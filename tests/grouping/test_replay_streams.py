"""Replays look live: a cached or shared answer streams as OpenAI streams a fresh one.

Through a real gateway and the fake upstream, read with the official SDK and with the chunk
rules chatbot-ui applies (see tests/deploy/test_chatbot_ui_replay.py): content chunks, then a
finish chunk without text, then usage only when asked, then ``[DONE]``; and each streaming
client gets an answer id of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from llm_gateway.testing.gateway import GatewayServer

from grouping_support import Held

ENDPOINTS = ("chat", "completions")


def request(endpoint: str, **fields: Any) -> dict[str, Any]:
    """A deterministic request no other test asked, so nothing cached answers it yet."""
    text = f"tell me about {uuid.uuid4().hex[:8]} and its many parts"
    body: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0, **fields}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


def create(sdk: openai.OpenAI, endpoint: str):
    return (sdk.chat.completions if endpoint == "chat" else sdk.completions).with_raw_response


def text_of(choice: Any, endpoint: str) -> str | None:
    """A chunk's (or whole answer's) text, as the SDK parsed it."""
    if endpoint == "chat":
        message = getattr(choice, "delta", None) or choice.message
        return message.content
    return choice.text


@pytest.fixture
def sdk(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0, timeout=30)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("usage", [False, True])
def test_a_cached_whole_answer_streams_like_a_live_one(sdk, endpoint, usage):
    body = request(endpoint)
    first = create(sdk, endpoint).create(**body)
    assert first.headers["x-lgw-cache"] == "miss"
    original = first.parse()
    options = {"stream_options": {"include_usage": True}} if usage else {}
    raw = create(sdk, endpoint).create(**body, stream=True, **options)
    assert raw.headers["x-lgw-cache"] == "hit"
    chunks = list(raw.parse())

    with_choices = [c for c in chunks if c.choices]
    finish = [c for c in with_choices if c.choices[0].finish_reason is not None]
    assert len(finish) == 1 and with_choices[-1] is finish[0]
    assert finish[0].choices[0].finish_reason == original.choices[0].finish_reason
    assert not text_of(finish[0].choices[0], endpoint), "the finish chunk carries text"
    content = [text_of(c.choices[0], endpoint) for c in with_choices[:-1]]
    text = text_of(original.choices[0], endpoint)
    assert "".join(t or "" for t in content) == text
    assert len(text.split()) > 3 and len([t for t in content if t]) >= 2

    assert {c.id for c in chunks} != {original.id} and len({c.id for c in chunks}) == 1
    usage_chunks = [c for c in chunks if not c.choices]
    if usage:
        assert chunks[-1] is usage_chunks[0] and len(usage_chunks) == 1
        assert chunks[-1].usage.total_tokens == original.usage.total_tokens
    else:
        assert not usage_chunks and all(c.usage is None for c in chunks)


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    """Each event's data, as eventsource-parser hands it to chatbot-ui."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def chatbot_ui_text(events: Iterator[str], endpoint: str) -> tuple[str, int]:
    """A stream read by chatbot-ui's rules (its delta.content; a completion's text): the text
    shown and how many chunks came before the finish. The finish chunk's text is dropped, a
    chunk without choices breaks the stream, a null text would show as "null"."""
    shown: list[str] = []
    for data in events:
        chunk = orjson.loads(data)
        assert chunk.get("choices"), f"a chunk without choices breaks chatbot-ui: {chunk}"
        choice = chunk["choices"][0]
        if choice.get("finish_reason") is not None:
            return "".join(shown), len(shown)
        holder = choice["delta"] if endpoint == "chat" else choice
        key = "content" if endpoint == "chat" else "text"
        assert key not in holder or holder[key] is not None, f"shown as 'null': {chunk}"
        shown.append(holder.get(key) or "")
    raise AssertionError("the stream ended without a finish_reason")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_chatbot_ui_shows_a_cached_replay_whole(gateway, sdk, endpoint):
    body = request(endpoint)
    original = create(sdk, endpoint).create(**body).parse()
    path = "/chat/completions" if endpoint == "chat" else "/completions"
    with httpx.stream("POST", gateway.url + path, json={**body, "stream": True},
                      headers={"Authorization": "Bearer sk-chatbot-ui"}, timeout=30) as response:
        assert response.headers["x-lgw-cache"] == "hit"
        shown, before = chatbot_ui_text(sse_events(response.iter_lines()), endpoint)
    assert shown == text_of(original.choices[0], endpoint) and before >= 2


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_cached_stream_keeps_its_pieces_under_a_new_id_per_replay(sdk, endpoint):
    body = request(endpoint, stream=True)
    # Cached before its [DONE] goes out (the SDK hangs up at [DONE]): the next one is a hit.
    live = list(create(sdk, endpoint).create(**body).parse())
    replays = []
    for _ in range(2):
        raw = create(sdk, endpoint).create(**body)
        assert raw.headers["x-lgw-cache"] == "hit"
        replays.append(list(raw.parse()))
    ids = [{c.id for c in stream} for stream in (live, *replays)]
    assert all(len(one) == 1 for one in ids) and len(set.union(*ids)) == 3

    def pieces(stream):
        return [text_of(c.choices[0], endpoint) for c in stream if c.choices]

    assert pieces(replays[0]) == pieces(replays[1]) == pieces(live)


# The first to arrive leads: streamed (the others share its live stream) or whole (the streamed
# others get it told as a stream).
@pytest.mark.parametrize("shapes", [(True, True, True, False), (False, True, True)])
async def test_coalesced_streams_each_get_their_own_id(make_gateway, fake, shapes):
    gateway = make_gateway()
    held = Held(gateway)
    sdk = openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0,
                             timeout=30)
    body = request("chat")

    async def one(stream: bool) -> tuple[set[str], str]:
        if not stream:
            answer = await sdk.chat.completions.create(**body)
            return {answer.id}, answer.choices[0].message.content
        chunks = [c async for c in await sdk.chat.completions.create(**body, stream=True)]
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert not chunks[-1].choices[0].delta.content
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return {c.id for c in chunks}, text

    tasks = [asyncio.create_task(one(shapes[0]))]
    await held.until(lambda: held.waiting == 1)
    tasks += [asyncio.create_task(one(stream)) for stream in shapes[1:]]
    await held.until(lambda: held.members() == len(shapes))
    held.release()
    answers = await asyncio.gather(*tasks)
    assert fake.calls["POST /v1/chat/completions"] == 1
    assert len({text for _, text in answers}) == 1
    streamed = [ids for (ids, _), stream in zip(answers, shapes, strict=True) if stream]
    assert all(len(ids) == 1 for ids in streamed)
    assert len(set.union(*streamed)) == len(streamed), "two clients got one answer id"
