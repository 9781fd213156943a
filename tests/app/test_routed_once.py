"""Each request is routed once, by the edge's path table: an operation's handler is called
directly, with its path parameters, and Connexion's router is never on the request path."""

from __future__ import annotations

import httpx

from llm_gateway.web.spec import PathTable, load_spec

from gateway_support import gateway_config


def test_path_table_gives_the_operation_and_its_parameters() -> None:
    table = PathTable(load_spec("openai.yaml"), load_spec("gateway.yaml"))
    found = table.match("/v1/models/org/model-1", "GET")
    assert found is not None
    assert (found.operation_id, found.params) == ("retrieveModel", {"model": "org/model-1"})
    found = table.match("/v1/responses/resp_1", "DELETE")
    assert found is not None
    assert (found.operation_id, found.params) == ("deleteResponse", {"response_id": "resp_1"})
    fixed = table.match("/v1/chat/completions", "POST")
    assert fixed is not None and (fixed.operation_id, fixed.params) == ("createChatCompletion",
                                                                      None)
    assert table.match("/v1/nowhere", "GET") is None


def test_requests_never_reach_connexions_router(fake, make_gateway) -> None:
    gw = make_gateway(gateway_config(fake.url))
    reached: list[str] = []
    inner = gw.app.inner

    async def counting(scope, receive, send) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await inner(scope, receive, send)

    gw.app.inner = counting
    listed = httpx.get(f"{gw.url}/models")
    one = httpx.get(f"{gw.url}/models/gpt-4o-mini")
    chat = httpx.post(f"{gw.url}/chat/completions", json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    unknown = httpx.get(f"{gw.url}/responses/resp_unknown")
    health = httpx.get(f"{gw.base}/healthz")
    assert listed.status_code == 200 and "gpt-4o-mini" in {m["id"] for m in listed.json()["data"]}
    assert one.status_code == 200 and one.json()["id"] == "gpt-4o-mini"  # its path parameter
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    assert unknown.status_code == 404 and "resp_unknown" in unknown.json()["error"]["message"]
    assert health.status_code == 200
    assert reached == []
