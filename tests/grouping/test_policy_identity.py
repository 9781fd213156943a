"""Which calls are grouped, and which calls count as the same."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.call import Call
from llm_gateway.config import parse_config
from llm_gateway.grouping.identity import identity
from llm_gateway.grouping.policy import Plan, Policy
from llm_gateway.principal import ANONYMOUS, Principal

from grouping_support import chat_call


def policy(**grouping) -> Policy:
    return Policy(parse_config({"grouping": grouping}, env={}).grouping)


def plan(call: Call, principal: Principal = ANONYMOUS, **grouping) -> Plan | None:
    return policy(**grouping).plan(call, principal)


def test_deterministic_requests_are_coalesced_and_cached_by_default():
    assert plan(chat_call(temperature=0)) == Plan(True, True, True)
    assert plan(chat_call(temperature=0.7, seed=42)) == Plan(True, True, True)


@pytest.mark.parametrize("fields", [{"temperature": 1}, {"temperature": None},
                                    {"temperature": False}, {"seed": None}])
def test_non_deterministic_requests_are_left_alone_by_default(fields):
    call = chat_call(**fields)
    if "temperature" not in fields or fields.get("temperature") is None:
        call.body.pop("temperature", None)
    assert plan(call) is None


def test_embeddings_are_deterministic():
    body = {"model": "text-embedding-3-small", "input": "hello"}
    call = Call("createEmbedding", "/embeddings", body["model"], body, orjson.dumps(body),
                False, "r1")
    assert plan(call) == Plan(True, True, True)


def test_responses_api_is_never_grouped():
    body = {"model": "gpt-4o-mini", "input": "hello", "temperature": 0}
    call = Call("createResponse", "/responses", body["model"], body, orjson.dumps(body),
                False, "r1")
    assert plan(call, coalesce="all") is None


def test_request_headers():
    assert plan(chat_call(hints={"x-lgw-group": "off"})) is None
    assert plan(chat_call(hints={"x-lgw-cache": "bypass"})) == Plan(True, False, True)
    assert plan(chat_call(headers={"cache-control": "no-cache"})) == Plan(True, False, True)
    assert plan(chat_call(headers={"cache-control": "max-age=0, no-store"})) == \
        Plan(True, False, False)


def test_model_and_team_overrides():
    hot = chat_call(temperature=1, model="gpt-4o")
    settings = {"models": {"gpt-4*": {"coalesce": "all"}, "gpt-4o-mini": {"coalesce": "off"}}}
    # A glob turns coalescing on for every request; the cache still wants determinism.
    assert plan(hot, **settings) == Plan(True, False, False)
    # An exact name beats a glob.
    assert plan(chat_call(model="gpt-4o-mini"), **settings) == Plan(False, True, True)
    # The team's own setting beats the model's.
    team = Principal(key_id="k1", team="a", coalesce="all")
    assert plan(chat_call(temperature=1, model="gpt-4o-mini"), team, **settings) == \
        Plan(True, False, False)
    assert plan(chat_call(), Principal(key_id="k1", coalesce="off")) == Plan(False, True, True)
    assert plan(chat_call(), coalesce="off", cache={"enabled": False}) is None
    assert plan(chat_call(model="m"), coalesce="off", cache={"enabled": False},
                models={"m": {"cache": True}}) == Plan(False, True, True)


def test_identity_ignores_key_order_whitespace_and_shape():
    a = chat_call(stream=True)
    body = dict(reversed(list(chat_call().body.items())))
    b = chat_call()
    b.body = orjson.loads(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    assert identity(a, ANONYMOUS) == identity(b, ANONYMOUS)


@pytest.mark.parametrize("change", [{"user": "alice"}, {"max_tokens": 5}, {"n": 2},
                                    {"model": "gpt-4o"}, {"seed": 1}, {"temperature": 0.0}])
def test_identity_keeps_every_field_that_changes_the_answer(change):
    assert identity(chat_call(**change), ANONYMOUS) != identity(chat_call(), ANONYMOUS)


def test_identity_is_per_team_unless_shared():
    a1, a2 = Principal("k1", team="a"), Principal("k2", team="a")
    b = Principal("k3", team="b")
    call = chat_call()
    assert identity(call, a1) == identity(call, a2)
    assert identity(call, a1) != identity(call, b)
    assert identity(call, Principal("k4")) != identity(call, Principal("k5"))  # no team: key
    shared_a = Principal("k1", team="a", shared_cache=True)
    shared_b = Principal("k3", team="b", shared_cache=True)
    assert identity(call, shared_a) == identity(call, shared_b) != identity(call, a1)
    assert identity(chat_call(headers={"openai-beta": "x"}), a1) != identity(call, a1)
