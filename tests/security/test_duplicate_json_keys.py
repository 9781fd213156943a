"""A JSON body with a key twice in one object, at any depth, is a 400 (`invalid_json`, naming
the key): the gateway acts on the last one while an upstream may read the first, so with
`{"model": "gpt-4o-mini", "model": "gpt-4o"}` a key limited to one model reached another.

Bodies without duplicates parse as before whatever their layout (compact, spaced, pretty,
colons and escaped quotes inside strings), since the cheap checks fall back to an exact one.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest

from llm_gateway.api.dispatch import parse_json
from llm_gateway.config import parse_config
from llm_gateway.errors import InvalidRequest
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config

CHAT = '"messages": [{"role": "user", "content": "hi"}]'

DUPLICATES = [
    ('{"model": "gpt-4o-mini", "model": "gpt-4o", ' + CHAT + "}", "model"),
    ('{"model":"gpt-4o-mini",' + CHAT.replace(" ", "") + ',"model":"gpt-4o"}', "model"),
    ('{"model": "m", "messages": [{"role": "user", "role": "system", "content": "x"}]}',
     "role"),
    ('{"model": "m", "a": {"b": {"c": 1, "c": 2}}}', "c"),
    ('{"model" : "m", "model" : "n"}', "model"),  # space before the colon
    ('{\n  "model":\n "m",\n  "model"\n  :\n "n"\n}', "model"),
    ('{"model": "m", "mod\\u0065l": "n"}', "model"),  # the same key, spelt with an escape
    ('{"model": "m", "x": "a:b:c", "x": 1}', "x"),  # a colon in a string as well
    ('{"model": "m", "args": "{\\"a\\": 1}", "args": 2}', "args"),  # JSON text in a string
    ('{"k\\\\": 1, "k\\\\": 2}', "k\\"),  # a key ending in a backslash
]

FINE = [
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
    '{"model": "gpt-4o-mini", ' + CHAT + "}",
    json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, indent=2),
    '{"model": "m", "content": "time: 12:30, url: https://x.test/a:b"}',
    '{"model": "m", "content": "\\":\\":", "k\\\\": "\\\\\\":"}',
    '{"model": "m", "tool": {"arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": \\"c\\"}"}}',
    '{"model": "m", "same": {"a": 1}, "other": {"a": 1}, "list": [{"a": 1}, {"a": 2}]}',
    '{"model": "m", "s": ":starts with a colon", "t": " :also"}',
    '{"model": "m", "empty": {}, "": 1, "nested": [[[{"x": [1, {"y": null}]}]]]}',
]


@pytest.mark.parametrize(("raw", "key"), DUPLICATES)
def test_duplicate_keys_are_invalid_json(raw, key):
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw.encode())
    assert caught.value.code == "invalid_json"
    assert f"'{key}'" in caught.value.message


@pytest.mark.parametrize("raw", FINE)
def test_bodies_without_duplicates_parse_as_before(raw):
    assert parse_json(raw.encode()) == json.loads(raw)


def test_a_deeply_nested_body_is_still_checked():
    deep = '{"model": "m", "x": ' + "[" * 250 + '{"a": 1, "a": 2}' + "]" * 250 + "}"
    with pytest.raises(InvalidRequest, match=r"twice|duplicate"):
        parse_json(deep.encode())
    fine = '{"model": "m", "x": ' + "[" * 250 + '{"a": 1, "b": 2}' + "]" * 250 + "}"
    assert parse_json(fine.encode())["model"] == "m"
    too_deep = fine.replace("[" * 250, "[" * 300).replace("]" * 250, "]" * 300)
    with pytest.raises(InvalidRequest, match="nested deeper than 255"):
        parse_json(too_deep.encode())


PIECES = ["a", "b", ":", '"', "\\", " ", "\n", "{", "}", "é", "x:y", '\\"', ' :']


class _Pairs(list):
    """An object as its list of pairs, so that a key may appear twice."""


def _random_value(rng: random.Random, depth: int):
    kind = rng.random()
    if depth > 3 or kind < 0.4:
        return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 4)))
    if kind < 0.5:
        return rng.choice([1, 2.5, True, None])
    if kind < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["model", "a", "b:c", 'q"', "k\\", ":"]
    pairs = _Pairs((rng.choice(keys), _random_value(rng, depth + 1))
                   for _ in range(rng.randint(0, 4)))
    return pairs


def _dump(value, style: dict) -> str:
    if isinstance(value, _Pairs):
        sep, colon = style["item"], style["key"]
        return "{" + sep.join(json.dumps(k, ensure_ascii=style["ascii"]) + colon
                              + _dump(v, style) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + style["item"].join(_dump(v, style) for v in value) + "]"
    return json.dumps(value, ensure_ascii=style["ascii"])


def _has_duplicate(value) -> bool:
    if isinstance(value, _Pairs):
        keys = [k for k, _ in value]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in value)
    if isinstance(value, list):
        return any(_has_duplicate(v) for v in value)
    return False


STYLES = [{"item": ",", "key": ":", "ascii": False},  # what SDKs send
          {"item": ", ", "key": ": ", "ascii": True},  # json.dumps' defaults (requests)
          {"item": ",\n  ", "key": " : ", "ascii": False},
          {"item": ",", "key": ":\t", "ascii": True}]


def test_random_bodies_agree_with_an_exact_check():
    # Every layout and content that could fool a count: the verdict must be the exact one.
    rng = random.Random(13)
    seen = {True: 0, False: 0}
    for _ in range(3000):
        body = _Pairs([("model", "m"), ("x", _random_value(rng, 0))])
        if rng.random() < 0.3:
            body.append((rng.choice(["model", "x"]), 1))
        raw = _dump(body, rng.choice(STYLES)).encode()
        duplicate = _has_duplicate(body)
        seen[duplicate] += 1
        if duplicate:
            with pytest.raises(InvalidRequest):
                parse_json(raw)
        else:
            assert parse_json(raw) == json.loads(raw), raw
    assert min(seen.values()) > 300


def test_the_gateway_refuses_a_duplicate_model_and_forwards_nothing(gateway, fake):
    reply = httpx.post(
        gateway.url + "/chat/completions",
        content=b'{"model": "gpt-4o-mini", "model": "gpt-4o", ' + CHAT.encode() + b"}",
        headers={"authorization": "Bearer sk-client-key", "content-type": "application/json"},
        timeout=10)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_json" and "'model'" in error["message"]
    assert fake.requests == []
    ok = httpx.post(gateway.url + "/chat/completions",
                    content=b'{"model": "gpt-4o-mini", ' + CHAT.encode() + b"}",
                    headers={"authorization": "Bearer sk-client-key",
                             "content-type": "application/json"}, timeout=10)
    assert ok.status_code == 200, ok.text


def test_the_admin_api_refuses_duplicates_too(fake, tmp_path):
    env = gateway_env()
    config = parse_config(keys_config(fake.url, str(tmp_path)), env=env)
    with GatewayServer(config, env=env) as gw:
        api = Admin(gw)
        reply = api("POST", "/admin/keys", content=b'{"name": "a", "name": "b"}')
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_json"
        assert api("GET", "/admin/keys").json()["data"] == []
