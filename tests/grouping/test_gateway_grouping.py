"""Request grouping end to end: the openai SDK, the gateway, a fake upstream counting calls.

Concurrency is made exact, not hoped for: `Held` keeps every backend call of the gateway
waiting until the test has seen all its requests arrive, then lets them go.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, UPSTREAM_KEY, gateway_config
from grouping_support import Held
from services import redis_url

CHAT = "POST /v1/chat/completions"
N = 50


def client(gateway: GatewayServer, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0,
                              default_headers=headers or None, timeout=30)


def messages() -> list[dict]:
    # A question no other test asked: nothing in the cache answers it.
    return [{"role": "user", "content": f"what is {uuid.uuid4().hex[:8]} about"}]


async def collect(stream) -> str:
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.fixture
def gateway(make_gateway) -> GatewayServer:
    return make_gateway()


async def test_50_identical_requests_make_one_upstream_call(gateway, fake):
    held, sdk, msgs = Held(gateway), client(gateway), messages()
    tasks = [asyncio.create_task(sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=msgs, temperature=0)) for _ in range(N)]
    await held.until(lambda: held.members() == N)
    held.release()
    raws = await asyncio.gather(*tasks)
    assert fake.calls[CHAT] == 1
    replies = [raw.parse() for raw in raws]
    assert len({r.model_dump_json() for r in replies}) == 1
    assert replies[0].choices[0].message.content.startswith("Echo: what is")
    kinds = sorted(raw.headers["x-lgw-cache"] for raw in raws)
    assert kinds == ["coalesced"] * (N - 1) + ["miss"]


async def test_50_identical_streams_make_one_upstream_call(gateway, fake):
    held, sdk, msgs = Held(gateway), client(gateway), messages()

    async def one() -> str:
        return await collect(await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=msgs, seed=7, stream=True))

    tasks = [asyncio.create_task(one()) for _ in range(N)]
    await held.until(lambda: held.members() == N)
    held.release()
    texts = await asyncio.gather(*tasks)
    assert fake.calls[CHAT] == 1
    assert len(set(texts)) == 1 and texts[0].startswith("Echo: what is")


async def test_stream_and_non_stream_requests_share_in_their_own_shapes(gateway, fake):
    held, sdk, msgs = Held(gateway), client(gateway), messages()
    streams = [asyncio.create_task(sdk.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, temperature=0, stream=True,
        stream_options={"include_usage": True})) for _ in range(3)]
    wholes = [asyncio.create_task(sdk.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, temperature=0)) for _ in range(3)]
    await held.until(lambda: held.members() == 6)
    held.release()
    answers = await asyncio.gather(*wholes)
    for task in streams:
        chunks = [c async for c in await task]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            answers[0].choices[0].message.content
        assert chunks[-1].usage.total_tokens == answers[0].usage.total_tokens
    assert fake.calls[CHAT] == 1


async def test_an_upstream_error_reaches_every_waiter(gateway, fake):
    held, sdk, msgs = Held(gateway), client(gateway), messages()
    fake.fail_next(400, message="bad things")
    tasks = [asyncio.create_task(sdk.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, temperature=0, stream=i % 2 == 0))
        for i in range(10)]
    await held.until(lambda: held.members() == 10)
    held.release()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert fake.calls[CHAT] == 1
    assert all(isinstance(o, openai.BadRequestError) and "bad things" in str(o)
               for o in outcomes)


@pytest.mark.parametrize("headers, fields", [({"x-lgw-group": "off"}, {"temperature": 0}),
                                             ({}, {"temperature": 0.8})])
async def test_opted_out_and_non_deterministic_requests_are_not_grouped(gateway, fake, headers,
                                                                         fields):
    held, sdk, msgs = Held(gateway), client(gateway, **headers), messages()
    tasks = [asyncio.create_task(sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=msgs, **fields)) for _ in range(5)]
    await held.until(lambda: held.waiting == 5)
    held.release()
    raws = await asyncio.gather(*tasks)
    assert fake.calls[CHAT] == 5
    assert all("x-lgw-cache" not in raw.headers for raw in raws)
    again = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=msgs, **fields)
    assert "x-lgw-cache" not in again.headers and fake.calls[CHAT] == 6


async def test_cache_hits_in_both_shapes_and_bypass(gateway, fake):
    sdk, msgs = client(gateway), messages()
    first = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=msgs, temperature=0)
    second = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=msgs, temperature=0)
    assert (first.headers["x-lgw-cache"], second.headers["x-lgw-cache"]) == ("miss", "hit")
    assert first.parse().model_dump() == second.parse().model_dump()
    text = await collect(await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=msgs, temperature=0, stream=True))
    assert text == first.parse().choices[0].message.content
    assert fake.calls[CHAT] == 1
    for headers in ({"x-lgw-cache": "bypass"}, {"cache-control": "no-cache"}):
        fresh = await sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=msgs, temperature=0, extra_headers=headers)
        assert fresh.headers["x-lgw-cache"] == "miss"
    assert fake.calls[CHAT] == 3
    # Gateway directives never travel upstream.
    assert not any(k.startswith("x-lgw-") for r in fake.requests for k in r.headers)


@pytest.fixture
def slow_fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY, chunk_delay=0.02) as server:
        yield server


def test_leader_disconnects_and_a_late_joiner_still_gets_everything(slow_fake):
    config = parse_config(gateway_config(slow_fake.url), env=ENV)
    words = " ".join(f"w{i}" for i in range(40))
    body = {"model": "gpt-4o-mini", "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": words}]}
    with GatewayServer(config, env=ENV) as gateway, httpx.Client(timeout=30) as http:
        url = gateway.url + "/chat/completions"
        with http.stream("POST", url, json=body) as leader:
            lines = leader.iter_lines()
            assert next(lines).startswith("data: ")  # the stream is under way
            with http.stream("POST", url, json=body) as late:
                assert late.headers["x-lgw-cache"] == "coalesced"
                leader.close()  # the first client goes away mid-stream
                text = late.read().decode()
        assert text.rstrip().endswith("data: [DONE]")
        sdk_text = "".join(
            orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in text.splitlines() if line.startswith("data: {"))
        assert sdk_text == "Echo: " + words
        assert slow_fake.calls[CHAT] == 1 and slow_fake.disconnects == 0


def test_redis_cache_is_shared_by_two_gateways(fake):
    url = redis_url()
    data = gateway_config(fake.url, storage={"redis_url": url},
                          grouping={"cache": {"backend": "redis"}})
    msgs = messages()
    with GatewayServer(parse_config(data, env=ENV), env=ENV) as one, \
            GatewayServer(parse_config(data, env=ENV), env=ENV) as two:
        a = openai.OpenAI(base_url=one.url, api_key="k", max_retries=0)
        b = openai.OpenAI(base_url=two.url, api_key="k", max_retries=0)
        first = a.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=msgs, temperature=0)
        assert first.headers["x-lgw-cache"] == "miss"
        for _ in range(200):  # the write follows the answer (a background task)
            second = b.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=msgs, temperature=0)
            if second.headers["x-lgw-cache"] == "hit":
                break
        assert second.headers["x-lgw-cache"] == "hit"
        assert second.parse().id == first.parse().id
