"""Responses the gateway keeps itself (a chat-only backend: issue 16, item 4) are their team's,
like any stored object (test_object_ownership.py): another team gets 404 on reading, listing,
deleting and continuing them, and the conversation is in the database, so it survives a
restart, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.testing.gateway import GatewayServer

from auth_support import call, keys_gateways, new_key
from services import storage_of

TEAMS = {"alpha": {}, "beta": {}}


@pytest.fixture
def start(fake, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A keys-mode gateway (teams alpha and beta) whose `chat-model` is served by the fake as
    a chat-only upstream."""
    upstream = {"base_url": fake.url, "api_key_env": "LGW_TEST_UPSTREAM_KEY"}
    yield from keys_gateways(
        fake, tmp_path, teams=TEAMS,
        upstreams={"openai": upstream, "chatonly": {**upstream, "responses_api": False}},
        models=[{"name": "chat-model", "backend": "chatonly"},
                {"name": "gpt-4o-mini", "backend": "openai"}])


def create(gw: GatewayServer, key: str, **body) -> httpx.Response:
    return call(gw, key, "POST", "/responses", json={"model": "chat-model", **body})


def not_found(reply: httpx.Response) -> None:
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_another_teams_response_does_not_exist_for_it(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    made = create(gw, mine, input="hello")
    assert made.status_code == 200, made.text
    response_id = made.json()["id"]
    for method, path in (("GET", f"/responses/{response_id}"),
                         ("GET", f"/responses/{response_id}/input_items"),
                         ("DELETE", f"/responses/{response_id}")):
        not_found(call(gw, theirs, method, path))
    not_found(create(gw, theirs, input="more", previous_response_id=response_id))
    sent = fake.calls["POST /v1/chat/completions"]
    assert sent == 1  # the refused continuation reached no backend
    # Still the owner's, whole.
    assert call(gw, mine, "GET", f"/responses/{response_id}").json()["id"] == response_id
    again = create(gw, mine, input="more", previous_response_id=response_id)
    assert again.status_code == 200 and len(fake.requests[-1].json["messages"]) == 3
    assert call(gw, mine, "DELETE", f"/responses/{response_id}").json()["deleted"] is True


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_conversations_survive_a_restart(start, fake, tmp_path, dialect):
    def run(storage: dict) -> None:
        gw = start(storage=storage)
        _, mine = new_key(gw, team="alpha")
        _, theirs = new_key(gw, team="beta")
        first = create(gw, mine, input="hello").json()["id"]
        second = create(gw, mine, input="again", previous_response_id=first).json()["id"]
        gw.stop()
        gw = start(storage=storage)  # a new process: only the database knows
        not_found(call(gw, theirs, "GET", f"/responses/{second}"))
        third = create(gw, mine, input="third", previous_response_id=second)
        assert third.status_code == 200, third.text
        assert [m["content"] for m in fake.requests[-1].json["messages"]] == [
            "hello", "Echo: hello", "again", "Echo: again", "third"]
        items = call(gw, mine, "GET", f"/responses/{second}/input_items").json()
        assert [i["content"][0]["text"] for i in items["data"]] == ["again"]
        gw.stop()  # before a PostgreSQL database is dropped

    with storage_of(dialect, tmp_path) as storage:
        run(storage)
