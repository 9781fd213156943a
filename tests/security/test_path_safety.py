"""Issue 13, defect 1: a path a URL library would resolve never gets past the edge.

`/v1/x/../chat/completions` used to reach the upstream's `/chat/completions` through the
passthrough, skipping model checks, limits and the ledger; `%2e%2e`, `%3f`, `%23` and the like
did the same, and `%00`/`%0d%0a` gave 500s. Every such form, sent byte for byte (http.client
sends the target as given; httpx would resolve it client-side) to every kind of route, must be
an OpenAI-shaped 400 `invalid_path` with nothing sent upstream.
"""

from __future__ import annotations

import http.client
import json
import socket

import httpx
import pytest

from llm_gateway.backends.transport import make_transport, timeout_extension
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.config import UpstreamConfig
from llm_gateway.errors import InvalidRequest
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import UPSTREAM_KEY

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
EMBED = json.dumps({"model": "text-embedding-3-small", "input": "hi"})

# (method, path, body): one of each kind of route the edge can send a request to.
ROUTES = [
    ("POST", "/v1/chat/completions", CHAT),  # model endpoints
    ("POST", "/v1/embeddings", EMBED),
    ("GET", "/v1/models", None),
    ("GET", "/v1/responses/resp_1", None),  # stored responses, owned by a team
    ("DELETE", "/v1/responses/resp_1", None),
    ("GET", "/admin/keys", None),
    ("GET", "/healthz", None),
    ("POST", "/v1/files", "x"),  # the passthrough
    ("GET", "/v1/batches/batch_1", None),
]
# Put in front of the last segment...
BEFORE_LAST = [
    "x/../", "./", "x/%2e%2e/", "x/%2E%2e/", "x/.%2E/", "x/%2e./", "%2e/", "%2E%2E/",
    "x/..;/", "x/%252e%252e/", "x/%c0%ae%c0%ae/", "/", "x%2f", "x%2F", "x\\", "x%5c", "x%5C",
    "x/..%5c", "x%2f..%2f",
]
# ... or after it.
AFTER = [
    "/..", "/.", "/%2e%2e", "/%2E", "/%2e%2E/", "/x/../..", "%3Fx", "%3f", "%23", "%23x",
    "%00", "%0d%0a", "%0D%0A", "%0a", "%09", "%1F", "%7f", "%7F", "\\", "%5c..", "//",
]
# The reproductions in the issue, as written.
REPORTED = [
    ("POST", "/v1/x/../chat/completions", CHAT),
    ("POST", "/v1/./chat/completions", CHAT),
    ("POST", "/v1/chat/completions%3Fx", CHAT),
    ("POST", "/v1/chat/completions%23", CHAT),
    ("GET", "/v1/x/../responses/resp_1", None),
    ("DELETE", "/v1/x/%2e%2e/responses/resp_1", None),
    ("GET", "/v1/x/../../internal/admin", None),
    ("GET", "/v1/files/a%0d%0ab", None),
    ("GET", "/v1/files/a%00b", None),
    ("GET", "/v1/models/acme%2F..%2Fx", None),  # a slashed model id holding a '..'
    ("GET", "/v1/models/acme%2F%2Fx", None),
]


def _forms() -> list[tuple[str, str, str | None]]:
    forms = list(REPORTED)
    for method, path, body in ROUTES:
        head, last = path.rsplit("/", 1)
        forms += [(method, f"{head}/{mid}{last}", body) for mid in BEFORE_LAST]
        forms += [(method, f"{path}{tail}", body) for tail in AFTER]
    return forms


def send(server: GatewayServer, method: str, target: str,
         body: str | None = None) -> tuple[int, bytes]:
    """`target` exactly as written on the request line."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"authorization": "Bearer sk-client-key", "content-type": "application/json"}
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _upstream_calls(fake: FakeUpstream) -> int:
    return sum(fake.calls.values())


@pytest.mark.parametrize(("method", "target", "body"), _forms())
def test_unsafe_paths_are_refused_before_routing(gateway, fake, method, target, body):
    status, raw = send(gateway, method, target, body)
    assert status == 400, (status, raw[:300])
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_path"
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].startswith("Invalid request path")
    assert _upstream_calls(fake) == 0, dict(fake.calls)


@pytest.mark.parametrize(("target", "seen"), [
    ("/v1/files/file-abc.jsonl", "/v1/files/file-abc.jsonl"),  # a dot inside a segment
    ("/v1/files/a%2eb", "/v1/files/a.b"),
    ("/v1/files/a%20b", "/v1/files/a b"),
    ("/v1/files/...", "/v1/files/..."),  # three dots are a name, not a dot segment
    ("/v1/files?after=a/../b", "/v1/files"),  # the query is not the path
])
def test_plain_paths_still_pass(gateway, fake, target, seen):
    status, raw = send(gateway, "GET", target)
    assert status == 200, raw[:300]
    assert json.loads(raw)["path"] == seen
    assert fake.requests[-1].path == seen


def test_model_ids_may_hold_an_encoded_slash(gateway, fake):
    # Hugging Face style ids (org/name): clients send GET /v1/models/acme%2Fhouse-llm.
    status, raw = send(gateway, "GET", "/v1/models/acme%2Fhouse-llm")
    assert status == 200, raw[:300]
    assert json.loads(raw)["id"] == "acme/house-llm"


@pytest.mark.parametrize("target", [b"/v1/fi\x00les", b"/v1/x/..\r/files", b"/v1/fi\x7fles"])
def test_raw_control_characters_never_reach_the_upstream(gateway, fake, target):
    # The HTTP parser refuses these before the gateway sees them (its own plain 400).
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert _upstream_calls(fake) == 0


# -- the upstream URL: the base URL and the path joined as strings, nothing resolved ---------

async def test_upstream_url_is_the_base_url_and_the_path_joined():
    backend = UpstreamBackend(UpstreamConfig(base_url="http://up.example/v1/", name="u"), {})
    try:
        url = backend._url("/files/file-1/content?after=a/../b")
        assert str(url) == "http://up.example/v1/files/file-1/content?after=a/../b"
        assert backend._url("/files/a b").raw_path == b"/v1/files/a%20b"
    finally:
        await backend.aclose()


@pytest.mark.parametrize("path", [
    "/x/../chat/completions", "/./models", "/files/..", "/x/%2e%2e/files", "/files//x",
    "/files\\x", "/files/%2fx", "/files/a%3fb",
])
async def test_upstream_url_refuses_what_a_url_library_would_resolve(path):
    backend = UpstreamBackend(UpstreamConfig(base_url="http://up.example/v1", name="u"), {})
    try:
        with pytest.raises(InvalidRequest) as err:
            backend._url(path)
        assert err.value.code == "invalid_path" and err.value.status == 400
    finally:
        await backend.aclose()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_transports_send_the_url_as_built(fake, transport):
    """Neither transport may re-normalise a URL (yarl, under aiohttp, used to turn
    `/x/%2e%2e/files` into `/files`)."""
    cfg = UpstreamConfig(base_url=fake.url, transport=transport, name="t")
    sender = make_transport(cfg, {})
    try:
        request = httpx.Request("GET", fake.url + "/x/%2e%2e/files",
                                headers={"authorization": f"Bearer {UPSTREAM_KEY}"},
                                extensions={"timeout": timeout_extension(cfg)})
        response = await sender.handle_async_request(request)
        await response.aread()
        await response.aclose()
    finally:
        await sender.aclose()
    assert [r.path for r in fake.requests] == ["/v1/x/../files"]
