"""Issue 13, defect 2 (ownership, ids in bodies): an id named inside a request body (a
`previous_response_id`, a batch's `input_file_id`, a vector store's `file_ids`, a file in a
message's content parts, a multipart form's file id) must be the caller's, as an id in the
path must: another team's answers the same 404 and nothing reaches the upstream.

A real gateway in keys mode with two teams in front of the fake upstream, which keeps what is
created (as one shared upstream account would) and serves it to anyone naming its id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llm_gateway.testing.gateway import GatewayServer

from auth_support import call, keys_gateways, new_key

TEAMS = {"alpha": {}, "beta": {}}


@pytest.fixture
def start(fake, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A keys-mode gateway (teams alpha and beta) in front of `fake`: `start(**overrides)`."""
    yield from keys_gateways(fake, tmp_path, teams=TEAMS)


def upload(gw: GatewayServer, key: str) -> str:
    reply = call(gw, key, "POST", "/files", data={"purpose": "batch"},
                 files={"file": ("data.jsonl", b'{"a": 1}\n')})
    assert reply.status_code == 200 and reply.json()["object"] == "file", reply.text
    return reply.json()["id"]


def stored_response(gw: GatewayServer, key: str) -> str:
    reply = call(gw, key, "POST", "/responses",
                 json={"model": "gpt-4o-mini", "input": "hi", "store": True})
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def not_found(reply: httpx.Response, object_id: str) -> None:
    assert reply.status_code == 404, (reply.request.url, reply.text)
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and object_id in error["message"]


def file_part(file_id: str) -> dict:
    return {"role": "user", "content": [{"type": "input_text", "text": "read this"},
                                        {"type": "input_file", "file_id": file_id}]}


def model_bodies(response: str, file: str) -> list[tuple[str, dict]]:
    """Model endpoint calls naming `response` or `file` inside their body."""
    return [
        ("/responses", {"model": "gpt-4o-mini", "input": "go on",
                        "previous_response_id": response}),
        ("/responses", {"model": "gpt-4o-mini", "input": [file_part(file)]}),
        ("/responses", {"model": "gpt-4o-mini", "input": "hi", "tools": [
            {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [file]}}]}),
        ("/chat/completions", {"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read this"},
                                         {"type": "file", "file": {"file_id": file}}]}]}),
    ]


def passthrough_bodies(file: str) -> list[tuple[str, dict]]:
    """Passthrough calls naming `file` inside their JSON body."""
    return [
        ("/batches", {"input_file_id": file, "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"}),
        ("/vector_stores", {"name": "notes", "file_ids": [file]}),
        ("/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": file}),
        ("/conversations", {"items": [file_part(file)]}),
    ]


def test_another_teams_ids_inside_a_body_answer_404_and_reach_nothing(start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    response, file = stored_response(gw, mine), upload(gw, mine)
    own_store = call(gw, theirs, "POST", "/vector_stores", json={"name": "b"}).json()["id"]
    before = sum(fake.calls.values())
    for path, body in model_bodies(response, file) + passthrough_bodies(file):
        reply = call(gw, theirs, "POST", path, json=body)
        not_found(reply, response if "previous_response_id" in body else file)
    # Under the caller's own object, the file named in the body is still another's.
    not_found(call(gw, theirs, "POST", f"/vector_stores/{own_store}/files",
                   json={"file_id": file}), file)
    # One of the caller's own among them does not open the other.
    not_found(call(gw, theirs, "POST", "/vector_stores",
                   json={"file_ids": [upload(gw, theirs), file]}), file)
    assert sum(fake.calls.values()) == before + 1  # only that upload was forwarded

    # The team's own ids, through any of its keys: forwarded as sent.
    _, teammate = new_key(gw, team="alpha")
    for path, body in model_bodies(response, file) + passthrough_bodies(file):
        reply = call(gw, teammate, "POST", path, json=body)
        assert reply.status_code == 200, (path, reply.text)
    forwarded = [r for r in fake.requests if r.path == "/v1/responses"][-3]
    assert forwarded.json["previous_response_id"] == response


def test_a_streamed_response_naming_another_teams_response_is_refused_before_the_stream(
        start, fake):
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    response = stored_response(gw, mine)
    before = fake.calls["POST /v1/responses"]
    reply = call(gw, theirs, "POST", "/responses", json={
        "model": "gpt-4o-mini", "input": "go on", "stream": True,
        "conversation": {"id": response}, "previous_response_id": response})
    not_found(reply, response)
    assert fake.calls["POST /v1/responses"] == before


def test_ids_in_a_multipart_form_are_checked_wherever_they_are(start, fake):
    gw = start(routing={"passthrough_endpoints": ["files", "videos"]})
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    file, own = upload(gw, mine), upload(gw, theirs)

    def video(key: str, *file_ids: str) -> httpx.Response:
        # A file part first, then the ids (the field may come after a large part).
        fields = [("input_reference[file_id]", (None, i.encode())) for i in file_ids]
        return call(gw, key, "POST", "/videos",
                    files=[("input_reference", ("ref.png", b"\x89PNG" * 1000)),
                           ("prompt", (None, b"a cat")), *fields])

    before = sum(fake.calls.values())
    not_found(video(theirs, file), file)
    not_found(video(theirs, own, file), file)  # a second field cannot hide one
    assert sum(fake.calls.values()) == before
    assert video(theirs, own).status_code == 200
    assert video(mine, file).status_code == 200


def test_unknown_ids_in_a_body_are_refused_in_keys_mode_unless_forwarded(start, fake):
    gw = start()
    _, key = new_key(gw, team="alpha")
    batch = {"input_file_id": "file-made-elsewhere", "endpoint": "/v1/chat/completions",
             "completion_window": "24h"}
    not_found(call(gw, key, "POST", "/batches", json=batch), "file-made-elsewhere")
    not_found(call(gw, key, "POST", "/responses", json={
        "model": "gpt-4o-mini", "input": "hi", "previous_response_id": "resp_elsewhere"}),
        "resp_elsewhere")
    assert fake.calls["POST /v1/batches"] == 0
    # More ids than any OpenAI body takes: refused before a query per 500 of them.
    many = call(gw, key, "POST", "/vector_stores",
                json={"file_ids": [f"file-{n}" for n in range(4001)]})
    assert many.status_code == 400 and many.json()["error"]["code"] == "too_many_objects"
    gw.stop()

    gw = start(auth={"mode": "keys", "unknown_objects": "forward"})
    assert call(gw, key, "POST", "/batches", json=batch).status_code == 200
    assert fake.calls["POST /v1/batches"] == 1


def test_other_methods_on_a_templated_path_go_through_the_passthrough(start, fake):
    """`POST /v1/responses/input_tokens` and `/compact` are OpenAI endpoints that our
    document leaves out; they matched `/v1/responses/{response_id}` (GET, DELETE) and got a
    405. Now they are relayed, governed, and a method on another team's response is a 404."""
    gw = start()
    _, mine = new_key(gw, team="alpha")
    _, theirs = new_key(gw, team="beta")
    response = stored_response(gw, mine)
    before = len(fake.requests)
    body = {"model": "gpt-4o-mini", "input": "count me"}
    for path in ("/responses/input_tokens", "/responses/compact"):
        reply = call(gw, mine, "POST", path, json=body)
        assert reply.status_code != 405, reply.text
        assert fake.requests[-1].path == "/v1" + path
    assert len(fake.requests) == before + 2
    # With another team's response id in the path and in the body: refused, not relayed.
    not_found(call(gw, theirs, "POST", f"/responses/{response}", json={}), response)
    not_found(call(gw, theirs, "POST", "/responses/input_tokens",
                   json={**body, "previous_response_id": response}), response)
    assert len(fake.requests) == before + 2
    # A fixed path keeps its 405.
    assert call(gw, mine, "PUT", "/chat/completions", json={}).status_code == 405
