"""Issue 13, defect 9: the gateway adds nothing upstream that the client did not send.

Every forwarded request used to carry `x-request-id: req_<hex>`, which llama-cpp-python's
server (it wants a UUID there) answers with an empty 400. Now the gateway's own id goes
upstream only under the header `upstreams.<name>.request_id_header` names, and the client's
own `x-request-id` passes through untouched (tests/security/test_llama_cpp_server.py runs the
real server).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from llm_gateway.config import ConfigError, parse_config

from gateway_support import gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_ID = "client trace/7 {not a gateway id}"  # the gateway makes its own for this one


def _calls(gw) -> Iterator[tuple[httpx.Response, str]]:
    """A chat, a streamed chat and a passthrough call, made one at a time as the caller
    iterates; each with the path the fake should have seen."""
    yield httpx.post(gw.url + "/chat/completions", json=CHAT), "/v1/chat/completions"
    yield (httpx.post(gw.url + "/chat/completions", json={**CHAT, "stream": True}),
           "/v1/chat/completions")
    yield httpx.get(gw.url + "/files/file-1"), "/v1/files/file-1"


def _with_header(config: dict, name: str) -> dict:
    config["upstreams"]["openai"]["request_id_header"] = name
    return config


def test_no_request_id_goes_upstream_by_default(gateway, fake):
    for response, path in _calls(gateway):
        assert response.status_code == 200
        assert response.headers["x-request-id"].startswith("req_")  # the client still gets it
        seen = fake.requests[-1]
        assert seen.path == path and "x-request-id" not in seen.headers


@pytest.mark.parametrize("client_id", [CLIENT_ID, "6f1c9a7e-2b7d-4c39-9a5e-1b2c3d4e5f60"])
def test_the_clients_own_request_id_passes_through_untouched(gateway, fake, client_id):
    for path in ("/chat/completions", "/files/file-1"):
        if path == "/chat/completions":
            r = httpx.post(gateway.url + path, json=CHAT, headers={"x-request-id": client_id})
        else:
            r = httpx.get(gateway.url + path, headers={"x-request-id": client_id})
        assert r.status_code == 200
        assert fake.requests[-1].headers["x-request-id"] == client_id


def test_a_configured_header_carries_the_gateways_id(make_gateway, fake):
    gw = make_gateway(_with_header(gateway_config(fake.url), "X-Gateway-Request-Id"))
    for response, _ in _calls(gw):
        seen = fake.requests[-1].headers
        assert seen["x-gateway-request-id"] == response.headers["x-request-id"]
        assert "x-request-id" not in seen
    r = httpx.post(gw.url + "/chat/completions", json=CHAT, headers={"x-request-id": CLIENT_ID})
    seen = fake.requests[-1].headers
    assert seen["x-request-id"] == CLIENT_ID  # still the client's, untouched
    assert seen["x-gateway-request-id"] == r.headers["x-request-id"] != CLIENT_ID


@pytest.mark.parametrize(("name", "says"), [
    ("x request id", "must be an HTTP header name"),
    ("x-id:", "must be an HTTP header name"),
    ("", "must be an HTTP header name"),
    ("Authorization", "a header the gateway sets itself"),
])
def test_request_id_header_must_be_a_usable_header_name(name, says):
    config = _with_header(gateway_config("http://127.0.0.1:9"), name)
    with pytest.raises(ConfigError) as info:
        parse_config(config, env={})
    [problem] = info.value.problems
    assert problem.startswith("upstreams.openai.request_id_header: ") and says in problem
