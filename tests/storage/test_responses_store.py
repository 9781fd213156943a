"""The responses the gateway keeps (api/responses_chat/store.py), on SQLite, PostgreSQL and in
memory: a conversation rebuilt turn by turn, per owner, deletions, and the bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from llm_gateway.api.responses_chat import store
from llm_gateway.api.responses_chat.store import Conversations
from llm_gateway.errors import InvalidRequest, NotFound

from services import open_test_database


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
async def conversations(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[Conversations]:
    kept = Conversations()
    if request.param == "memory":  # no database open
        await kept.start(None)
        yield kept
        return
    async with open_test_database(request.param, tmp_path) as db:
        await kept.start(db)
        yield kept


def turn(n: int, previous: int | None = None) -> tuple[dict, list[dict]]:
    """Response `resp_<n>` (continuing `resp_<previous>`) and its input items."""
    response = {"id": f"resp_{n}", "object": "response", "status": "completed",
                "previous_response_id": None if previous is None else f"resp_{previous}",
                "output": [{"id": f"msg_out{n}", "type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": f"answer {n}"}]}]}
    items = [{"id": f"msg_in{n}", "type": "message", "role": "user",
              "content": [{"type": "input_text", "text": f"question {n}"}]}]
    return response, items


async def chain(kept: Conversations, length: int, owner: str = "team:a") -> None:
    for n in range(length):
        response, items = turn(n, n - 1 if n else None)
        assert await kept.save(response, owner, items, "local")


async def test_a_conversation_is_its_turns_in_order(conversations):
    await chain(conversations, 3)
    items = await conversations.history("resp_2", "team:a")
    assert [i["id"] for i in items] == ["msg_in0", "msg_out0", "msg_in1", "msg_out1",
                                        "msg_in2", "msg_out2"]
    assert [i["id"] for i in await conversations.history("resp_0", "team:a")] == [
        "msg_in0", "msg_out0"]
    found = await conversations.find("resp_1", "team:a")
    assert found is not None and found.backend == "local"
    assert found.response["output"][0]["id"] == "msg_out1"
    assert found.input_items == turn(1)[1]


async def test_another_owner_finds_nothing(conversations):
    await chain(conversations, 2)
    assert await conversations.history("resp_1", "team:b") is None
    assert await conversations.find("resp_1", "team:b") is None
    assert not await conversations.delete("resp_1", "team:b")
    assert await conversations.history("resp_1", "team:a") is not None


async def test_a_deleted_response_is_gone_and_its_conversation_starts_after_it(conversations):
    await chain(conversations, 3)
    assert await conversations.delete("resp_1", "team:a")
    assert not await conversations.delete("resp_1", "team:a")  # once
    deleted = await conversations.find("resp_1", "team:a")
    assert deleted is not None and deleted.response is None  # known, as a tombstone
    with pytest.raises(NotFound):
        await conversations.history("resp_1", "team:a")
    assert [i["id"] for i in await conversations.history("resp_2", "team:a")] == [
        "msg_in2", "msg_out2"]


async def test_a_conversation_too_long_cannot_be_continued(conversations, monkeypatch):
    monkeypatch.setattr(store, "MAX_CHAIN", 4)
    await chain(conversations, 5)
    assert len(await conversations.history("resp_3", "team:a")) == 8
    with pytest.raises(InvalidRequest) as err:
        await conversations.history("resp_4", "team:a")
    assert err.value.param == "previous_response_id"
    monkeypatch.setattr(store, "MAX_HISTORY_BYTES", 1000)
    with pytest.raises(InvalidRequest):
        await conversations.history("resp_3", "team:a")


async def test_a_response_too_large_is_not_kept(conversations, monkeypatch):
    monkeypatch.setattr(store, "MAX_STORED_BYTES", 600)
    response, items = turn(0)
    response["output"][0]["content"][0]["text"] = "x" * 600
    assert not await conversations.save(response, "team:a", items, None)
    assert await conversations.find("resp_0", "team:a") is None


DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
async def aged(request: pytest.FixtureRequest,
               tmp_path: Path) -> AsyncIterator[tuple[Conversations, Clock]]:
    """Conversations kept for a day, on a clock the test moves."""
    clock = Clock()
    kept = Conversations(clock=clock, retention_seconds=DAY)
    try:
        if request.param == "memory":
            await kept.start(None)
            yield kept, clock
            return
        async with open_test_database(request.param, tmp_path) as db:
            await kept.start(db)
            yield kept, clock
    finally:
        await kept.aclose()


async def test_responses_past_their_retention_are_deleted(aged):
    """Rows were kept for ever: the table (or the process's memory) only grew."""
    kept, clock = aged
    await chain(kept, 2)
    assert await kept.delete("resp_0", "team:a")  # a tombstone goes the same way
    clock.now += DAY / 2
    response, items = turn(2, 1)
    assert await kept.save(response, "team:a", items, "local")
    clock.now += DAY * 0.75  # resp_0 and resp_1 are past a day old, resp_2 is not
    assert await kept.sweep() == 2
    assert await kept.find("resp_0", "team:a") is None
    assert await kept.find("resp_1", "team:a") is None
    assert await kept.find("resp_2", "team:a") is not None
    # Its conversation starts after the turns that are gone.
    assert [i["id"] for i in await kept.history("resp_2", "team:a")] == ["msg_in2", "msg_out2"]
    assert await kept.sweep() == 0


async def test_a_gateway_sweeps_when_it_starts(tmp_path):
    async with open_test_database("sqlite", tmp_path) as db:
        clock = Clock()
        forever = Conversations(clock=clock)  # responses_retention_days: null
        await forever.start(db)
        await chain(forever, 1)
        clock.now += 2 * DAY
        assert await forever.sweep() == 0
        kept = Conversations(clock=clock, retention_seconds=DAY)
        await kept.start(db)
        try:
            assert await kept.find("resp_0", "team:a") is None
        finally:
            await kept.aclose()


async def test_responses_in_memory_are_bounded_in_bytes(monkeypatch):
    """Without a database up to 10,000 responses of up to 16 MiB each were kept: 160 GiB."""
    response, items = turn(0)
    one = len(orjson.dumps(response)) + len(orjson.dumps(items))
    monkeypatch.setattr(store, "MEMORY_BYTES", 3 * one + one // 2)
    kept = Conversations()
    await kept.start(None)
    await chain(kept, 10)
    present = [n for n in range(10) if await kept.find(f"resp_{n}", "team:a") is not None]
    assert present == [7, 8, 9]  # the oldest went first


def test_the_retention_is_a_positive_number_of_days_or_null():
    from llm_gateway.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"storage\.responses_retention_days: must be > 0"):
        parse_config({"storage": {"responses_retention_days": 0}}, env={})
    kept = parse_config({"storage": {"responses_retention_days": None}}, env={})
    assert kept.storage.responses_retention_days is None
