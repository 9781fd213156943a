"""Bad input gets the right 4xx in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest


def assert_openai_error(r: httpx.Response, status: int, param=None, code=None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


CHAT = "/chat/completions"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 42, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]},
         "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
          "temperature": 3}, "temperature"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
          "top_p": "high"}, "top_p"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
          "n": 0}, "n"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 7}]},
         "messages[0].content"),
    ],
)
def test_invalid_chat_bodies_name_the_field(gateway, fake, body, param):
    r = httpx.post(gateway.url + CHAT, json=body)
    error = assert_openai_error(r, 400, param=param)
    assert error["type"] == "invalid_request_error"
    assert fake.calls["POST /v1/chat/completions"] == 0


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_unparseable_bodies(gateway, raw):
    r = httpx.post(gateway.url + CHAT, content=raw, headers={"content-type": "application/json"})
    assert_openai_error(r, 400)


def test_other_endpoints_validate_too(gateway):
    assert_openai_error(httpx.post(gateway.url + "/embeddings", json={"model": "m"}), 400,
                        param="input")
    assert_openai_error(httpx.post(gateway.url + "/completions", json={"model": "m"}), 400,
                        param="prompt")
    assert_openai_error(
        httpx.post(gateway.url + "/embeddings",
                   json={"model": "m", "input": "x", "encoding_format": "hex"}),
        400, param="encoding_format")


def test_wrong_method_is_405(gateway):
    r = httpx.put(gateway.url + CHAT, json={})
    assert_openai_error(r, 405, code="method_not_allowed")
    assert "POST" in r.headers["allow"]
    assert_openai_error(httpx.delete(gateway.url + "/models"), 405)


def test_unknown_non_api_path_is_404(gateway):
    assert_openai_error(httpx.get(gateway.base + "/nowhere"), 404)


def test_body_over_limit_is_413(gateway, fake):
    big = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + (
        b"x" * (1024 * 1024 + 10)) + b'"}]}'
    r = httpx.post(gateway.url + CHAT, content=big, headers={"content-type": "application/json"})
    assert_openai_error(r, 413, code="request_too_large")

    def chunks():
        for _ in range(20):
            yield b"y" * 100_000

    # Without a Content-Length the limit is enforced while reading.
    r = httpx.post(gateway.url + CHAT, content=chunks(),
                   headers={"content-type": "application/json"})
    assert_openai_error(r, 413)
    assert fake.calls["POST /v1/chat/completions"] == 0


def test_server_keeps_serving_after_errors(gateway, client):
    for raw in (b"{", b"[]", b"null"):
        httpx.post(gateway.url + CHAT, content=raw)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "still here"}]
    )
    assert reply.choices[0].message.content == "Echo: still here"


@pytest.mark.parametrize("path", [CHAT, "/moderations"])
def test_json_nested_deeper_than_orjson_writes_is_a_400(gateway, path):
    # orjson reads 1024 levels but writes 255: a body in between was a 500 wherever the
    # gateway writes it again (grouping's key at temperature 0, a renamed model).
    deep = "[" * 300 + "]" * 300
    raw = ('{"model": "house-model", "temperature": 0, "input": "x", "messages": '
           '[{"role": "user", "content": "x"}], "metadata": {"a": ' + deep + '}}')
    r = httpx.post(gateway.url + path, content=raw, timeout=10,
                   headers={"content-type": "application/json"})
    assert "255 levels" in assert_openai_error(r, 400, code="invalid_json")["message"]
    ok = raw.replace(deep, "[" * 100 + "]" * 100)  # deep, but writable: not refused for it
    assert httpx.post(gateway.url + path, content=ok, timeout=10,
                      headers={"content-type": "application/json"}).status_code != 500
