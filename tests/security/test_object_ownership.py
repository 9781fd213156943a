"""Issue 13, defect 2 (ownership): objects a team creates (stored responses, files, batches,
vector stores) are remembered with their owner in the database, and another team gets 404 on
them, their content, their sub-resources and in lists; an id the gateway never saw created is
refused in `auth.mode: keys` (unless `auth.unknown_objects: forward`).

A real gateway in keys mode with two teams in front of the fake upstream, which keeps what is
created (as one shared upstream account would) and serves it to anyone naming its id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llm_gateway.testing.gateway import GatewayServer

from auth_support import call, keys_gateways, new_key
from gateway_support import UPSTREAM_KEY
from services import fresh_postgres_database

TEAMS = {"alpha": {}, "beta": {}}
AT_UPSTREAM = {"authorization": f"Bearer {UPSTREAM_KEY}"}  # straight to the fake, as the gateway


@pytest.fixture
def start(fake, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A keys-mode gateway (teams alpha and beta) in front of `fake`: `start(**overrides)`."""
    yield from keys_gateways(fake, tmp_path, teams=TEAMS)


def upload(gw: GatewayServer, key: str, content: bytes = b'{"a": 1}\n') -> str:
    reply = call(gw, key, "POST", "/files", data={"purpose": "batch"},
                 files={"file": ("data.jsonl", content)})
    assert reply.status_code == 200 and reply.json()["object"] == "file", reply.text
    return reply.json()["id"]


def made(gw: GatewayServer, key: str) -> dict[str, str]:
    """A file, a batch, a vector store and a stored response, made by `key`: kind -> id."""
    file = upload(gw, key)  # the batch's input: ids in a body must be the caller's too
    batch = call(gw, key, "POST", "/batches", json={
        "input_file_id": file, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    store = call(gw, key, "POST", "/vector_stores", json={"name": "notes"})
    response = call(gw, key, "POST", "/responses",
                    json={"model": "gpt-4o-mini", "input": "hi", "store": True})
    for reply in (batch, store, response):
        assert reply.status_code == 200, reply.text
    return {"file": file, "batch": batch.json()["id"],
            "vector_store": store.json()["id"], "response": response.json()["id"]}


def reads(ids: dict[str, str]) -> list[tuple[str, str]]:
    """Calls on each object and what is under it that change nothing."""
    file, batch, store, response = ids["file"], ids["batch"], ids["vector_store"], ids["response"]
    return [("GET", f"/files/{file}"), ("GET", f"/files/{file}/content"),
            ("GET", f"/batches/{batch}"),
            ("GET", f"/vector_stores/{store}"), ("GET", f"/vector_stores/{store}/files"),
            ("GET", f"/responses/{response}"), ("GET", f"/responses/{response}/input_items")]


def writes(ids: dict[str, str]) -> list[tuple[str, str]]:
    file, batch, store, response = ids["file"], ids["batch"], ids["vector_store"], ids["response"]
    return [("POST", f"/batches/{batch}/cancel"), ("POST", f"/vector_stores/{store}"),
            ("POST", f"/responses/{response}/cancel"), ("DELETE", f"/files/{file}"),
            ("DELETE", f"/vector_stores/{store}"), ("DELETE", f"/responses/{response}")]


def not_found(reply: httpx.Response, object_id: str) -> None:
    assert reply.status_code == 404, (reply.request.url, reply.text)
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and object_id in error["message"]


def test_another_teams_objects_answer_404_and_never_reach_the_upstream(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, teammate = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    _, loner = new_key(gw)  # no team: its objects are its key's
    ids = made(gw, mine)
    before = sum(fake.calls.values())
    for stranger in (theirs, loner):
        for method, path in reads(ids) + writes(ids):
            reply = call(gw, stranger, method, path, json={} if method == "POST" else None)
            not_found(reply, path.split("/")[2])
    assert sum(fake.calls.values()) == before  # not one of them was forwarded

    for method, path in reads(ids) + writes(ids):  # the team's own: any key of the team
        reply = call(gw, teammate, method, path, json={"name": "renamed"}
                     if method == "POST" else None)
        assert reply.status_code == 200, (method, path, reply.text)

    # A key without a team owns what it makes, alone.
    own = upload(gw, loner)
    assert call(gw, loner, "GET", f"/files/{own}/content").content == b'{"a": 1}\n'
    not_found(call(gw, mine, "GET", f"/files/{own}"), own)


def test_streamed_responses_and_stored_chat_completions_are_their_teams_too(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    client = openai.OpenAI(base_url=gw.url, api_key=mine, max_retries=0)
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    streamed = events[-1].response.id
    chat = client.chat.completions.create(model="gpt-4o-mini", store=True,
                                          messages=[{"role": "user", "content": "hi"}])
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", store=True, stream=True,
        messages=[{"role": "user", "content": "hi"}]))
    for path, object_id in ((f"/responses/{streamed}", streamed),
                            (f"/chat/completions/{chat.id}", chat.id),
                            (f"/chat/completions/{chunks[0].id}/messages", chunks[0].id)):
        assert call(gw, mine, "GET", path).status_code == 200, path
        not_found(call(gw, theirs, "GET", path), object_id)


def test_lists_show_only_the_callers_objects_and_page_like_the_sdk(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    alpha, beta = [], []
    for _ in range(3):  # interleaved, so that every upstream page mixes both teams
        alpha.append(upload(gw, mine))
        beta.append(upload(gw, theirs))
    listed = call(gw, mine, "GET", "/files", headers={"accept-encoding": "br, gzip"}).json()
    assert [f["id"] for f in listed["data"]] == alpha
    # Read by the gateway, so asked for uncompressed, as a create's answer is.
    assert fake.requests[-1].headers["accept-encoding"] == "identity"
    assert [r.headers["accept-encoding"] for r in fake.requests
            if r.method == "POST" and r.path == "/v1/files"] == ["identity"] * 6
    assert listed["has_more"] is False and listed["last_id"] == alpha[-1]
    assert [f["id"] for f in call(gw, theirs, "GET", "/files").json()["data"]] == beta

    # One object per page: the gateway reads on past the other team's until it has one.
    page = call(gw, mine, "GET", "/files", params={"limit": 1}).json()
    assert [f["id"] for f in page["data"]] == alpha[:1] and page["has_more"] is True
    client = openai.OpenAI(base_url=gw.url, api_key=mine, max_retries=0)
    assert [f.id for f in client.files.list(limit=1)] == alpha  # the SDK's auto-paging

    batch = call(gw, theirs, "POST", "/batches", json={
        "input_file_id": beta[0], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    assert call(gw, mine, "GET", "/batches").json()["data"] == []
    assert [b["id"] for b in call(gw, theirs, "GET", "/batches").json()["data"]] == [batch["id"]]


def test_an_id_the_gateway_never_saw_created_is_refused_unless_configured(start, fake):
    # Made directly at the provider with the shared upstream key (or before the gateway
    # tracked owners): nobody's through the gateway.
    direct = httpx.post(fake.url + "/vector_stores", json={"name": "direct"},
                        headers=AT_UPSTREAM).json()["id"]
    gw = start()
    _, key = new_key(gw, team="alpha")
    not_found(call(gw, key, "GET", f"/vector_stores/{direct}"), direct)
    assert call(gw, key, "GET", "/vector_stores").json()["data"] == []
    gw.stop()

    gw = start(auth={"mode": "keys", "unknown_objects": "forward"})
    assert call(gw, key, "GET", f"/vector_stores/{direct}").json()["name"] == "direct"
    assert [v["id"] for v in call(gw, key, "GET", "/vector_stores").json()["data"]] == [direct]


def test_the_files_a_teams_batch_writes_are_the_teams(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    batch = call(gw, mine, "POST", "/batches", json={
        "input_file_id": upload(gw, mine), "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()["id"]
    # The upstream finishes the batch and writes its output file.
    output = httpx.post(fake.url + "/files", data={"purpose": "batch_output"},
                        files={"file": ("out.jsonl", b"{}\n")}, headers=AT_UPSTREAM).json()["id"]
    fake._objects["batches"][batch].update(status="completed", output_file_id=output)
    assert call(gw, mine, "GET", f"/batches/{batch}").json()["output_file_id"] == output
    assert call(gw, mine, "GET", f"/files/{output}/content").content == b"{}\n"
    not_found(call(gw, theirs, "GET", f"/files/{output}/content"), output)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_owners_survive_a_restart(start, fake, tmp_path, dialect):
    def run(storage: dict) -> None:
        gw = start(storage=storage)
        _, mine = new_key(gw, team="alpha")
        _, theirs = new_key(gw, team="beta")
        ids = made(gw, mine)
        gw.stop()
        gw = start(storage=storage)  # a new process's memory: only the database knows
        for method, path in reads(ids):
            not_found(call(gw, theirs, method, path), path.split("/")[2])
            assert call(gw, mine, method, path).status_code == 200, path
        gw.stop()  # before a PostgreSQL database is dropped

    if dialect == "sqlite":
        run({"data_dir": str(tmp_path)})
        return
    with fresh_postgres_database() as url:
        run({"url": url, "data_dir": str(tmp_path)})


def test_an_unreadable_database_fails_closed(start, fake, tmp_path):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    own = upload(gw, mine)  # its owner is cached in this process
    assert call(gw, theirs, "GET", "/files").status_code == 200  # its key too
    os.rename(tmp_path / "gateway.db", tmp_path / "moved.db")
    reply = call(gw, theirs, "GET", "/files/file-never-seen")
    assert reply.status_code == 503, reply.text  # not known to be nobody's: not forwarded
    assert reply.json()["error"]["code"] in ("database_lost", "database_unavailable")
    not_found(call(gw, theirs, "GET", f"/files/{own}"), own)  # known: still another's
    assert call(gw, mine, "GET", f"/files/{own}").status_code == 200

