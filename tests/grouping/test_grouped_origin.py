"""A grouped answer says where it came from as the original did: `x-lgw-backend`,
`x-lgw-deployment` and `x-lgw-fallback` on a cache hit (whole or streamed, from a whole or a
streamed original, in memory or in Redis) and on a coalesced answer; the ledger records the
hit's deployment. Through a real gateway and the official SDK, fake upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from llm_gateway.accounting.record import TABLE
from llm_gateway.config import parse_config
from llm_gateway.grouping.cache import REDIS_PREFIX
from llm_gateway.testing.fake_upstream import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import gateway_env
from grouping_support import Held
from services import free_port, redis_url

ORIGIN = ("x-lgw-backend", "x-lgw-deployment", "x-lgw-fallback")


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with FakeUpstream(api_key="sk-a") as a, FakeUpstream(api_key="sk-b") as b:
        yield {"a": a, "b": b}


@pytest.fixture
def start(fakes: dict[str, FakeUpstream],
          tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    limits = {"retries": {"attempts": 0}, "timeouts": {"connect": 2, "read": 5, "total": 10}}
    upstreams = {name: {"base_url": fake.url, "api_key_env": f"LGW_KEY_{name.upper()}", **limits}
                 for name, fake in fakes.items()}
    for name in ("down", "down2"):
        upstreams[name] = {"base_url": f"http://127.0.0.1:{free_port()}/v1", **limits}
    models = [
        {"name": "m", "strategy": "priority", "deployments": [
            {"backend": "a", "name": "east"}, {"backend": "b", "priority": 1}]},
        {"name": "f", "deployments": [{"backend": "down"}], "fallbacks": ["ok"]},
        {"name": "ok", "deployments": [{"backend": "b", "name": "west"}]},
        {"name": "d", "deployments": [{"backend": "down"}, {"backend": "down2"}]},
    ]
    with ExitStack() as running:
        def start(**extra: dict) -> GatewayServer:
            data = {"upstreams": upstreams, "models": models,
                    "storage": {"data_dir": str(tmp_path), **extra.pop("storage", {})},
                    "accounting": {"flush_seconds": 0.05}, **extra}
            env = gateway_env(LGW_KEY_A="sk-a", LGW_KEY_B="sk-b")
            return running.enter_context(GatewayServer(parse_config(data, env=env), env=env))

        yield start


def _messages() -> list[dict]:
    return [{"role": "user", "content": f"where from {uuid.uuid4().hex[:8]}"}]


def _origin(headers) -> tuple[str | None, ...]:
    return tuple(headers.get(name) for name in ORIGIN)


def _ask(server: GatewayServer, model: str, msgs: list[dict], stream: bool,
         request_id: str | None = None):
    """(x-lgw-cache, the origin headers, the text) of one deterministic request."""
    client = openai.OpenAI(base_url=server.url, api_key="sk-client", max_retries=0)
    extra = {"x-request-id": request_id} if request_id else None
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=msgs, temperature=0, stream=stream, extra_headers=extra)
    answer = raw.parse()
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    else:
        text = answer.choices[0].message.content
    return raw.headers["x-lgw-cache"], _origin(raw.headers), text


def _replays_say_where(server: GatewayServer, model: str,
                       origin: tuple[str | None, ...]) -> None:
    for first in (False, True):  # a whole answer cached, then a streamed one
        msgs = _messages()
        kind, said, text = _ask(server, model, msgs, first)
        assert (kind, said) == ("miss", origin)
        for stream in (False, True):  # each replayed in both shapes
            assert _ask(server, model, msgs, stream) == ("hit", origin, text)


def test_a_cache_hit_names_its_backend_deployment_and_fallback(start, fakes) -> None:
    server = start()
    _replays_say_where(server, "m", ("a", "east", None))
    _replays_say_where(server, "f", ("b", "west", "error; model=ok"))
    assert fakes["a"].calls["POST /v1/chat/completions"] == 2  # one per cached answer


def test_a_redis_hit_names_them_and_an_old_entry_still_replays(start) -> None:
    import redis

    url = redis_url()
    server = start(storage={"redis_url": url}, grouping={"cache": {"backend": "redis"}})
    _replays_say_where(server, "m", ("a", "east", None))
    store = redis.Redis.from_url(url)
    msgs = _messages()
    before = set(store.keys(REDIS_PREFIX + "*"))
    _, _, text = _ask(server, "m", msgs, False)
    deadline = time.monotonic() + 5  # written in the background
    while not (new := set(store.keys(REDIS_PREFIX + "*")) - before) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    [key] = new
    head, _, body = store.get(key).partition(b"\n")
    assert head.startswith(b"json+ ")  # the deployment is kept with the answer
    # An entry an older gateway wrote (its head names the backend only) still replays.
    store.set(key, b"json a\n" + body, px=30_000)
    assert _ask(server, "m", msgs, False) == ("hit", ("a", None, None), text)
    assert _ask(server, "m", msgs, True) == ("hit", ("a", None, None), text)


def test_a_coalesced_answer_names_them_too(start, fakes) -> None:
    server = start()
    held, msgs = Held(server), _messages()

    async def both() -> list:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-client", max_retries=0)
        tasks = [asyncio.create_task(client.chat.completions.with_raw_response.create(
            model="m", messages=msgs, temperature=0, stream=stream)) for stream in (False, True)]
        await held.until(lambda: held.members() == 2)
        held.release()
        return [(raw.headers["x-lgw-cache"], _origin(raw.headers))
                for raw in await asyncio.gather(*tasks)]

    said = asyncio.run(both())
    assert sorted(said) == [("coalesced", ("a", "east", None)), ("miss", ("a", "east", None))]


def _rows(tmp_path: Path, count: int) -> dict[str, tuple]:
    """The ledger's rows by request id, once `count` are in."""
    deadline = time.monotonic() + 10
    rows: dict = {}
    while len(rows) < count and time.monotonic() < deadline:
        if (tmp_path / "gateway.db").exists():
            with sqlite3.connect(tmp_path / "gateway.db") as db:
                rows = {r[0]: r[1:] for r in db.execute(
                    f"SELECT request_id, grouping, deployment, attempts, fallback_reason, "
                    f"backend FROM {TABLE}")}
        time.sleep(0.05)
    return rows


def test_the_ledger_records_where_a_hit_came_from(start, tmp_path) -> None:
    server = start()
    msgs = _messages()
    _ask(server, "f", msgs, False, "first")
    _ask(server, "f", msgs, True, "again")
    assert _rows(tmp_path, 2) == {"first": ("miss", "west", 2, "error", "b"),
                    "again": ("hit", "west", 0, "error", "b")}


def test_a_request_sharing_a_failed_call_records_none_of_its_attempts(start,
                                                                      tmp_path) -> None:
    server = start()
    held, msgs = Held(server), _messages()  # both in the gateway before the backend call

    async def both() -> list:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-client", max_retries=0)
        tasks = [asyncio.create_task(client.chat.completions.create(
            model="d", messages=msgs, temperature=0, extra_headers={"x-request-id": rid}))
            for rid in ("leader", "member")]
        await held.until(lambda: held.members() == 2)
        held.release()
        return await asyncio.gather(*tasks, return_exceptions=True)

    failed = asyncio.run(both())
    assert [getattr(e, "status_code", e) for e in failed] == [502, 502]  # both unreachable
    # The one call tried both deployments: its leader's record says so, the member's 0; each
    # says how grouping took part, as an answer's record does, and which backend failed last.
    # (Which of the two leads is which arrived first.)
    leader, member = sorted(_rows(tmp_path, 2).values(), key=lambda row: -row[2])
    assert (leader[:4], member[:4]) == (("miss", None, 2, None), ("coalesced", None, 0, None))
    assert leader[4] in ("down", "down2")  # (weighted: either may be tried last)
    assert member[4] == leader[4]
