"""Routing by model name: exact, alias, rename, patterns in order, default, unknown."""

from __future__ import annotations

import pytest

from llm_gateway.backends.base import Backend
from llm_gateway.call import Call, Result
from llm_gateway.config import parse_config
from llm_gateway.errors import ModelNotFound
from llm_gateway.routing.router import Router


class Stub(Backend):
    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, call: Call) -> Result:
        raise AssertionError("routing never calls a backend")


def make_router(**routing) -> tuple[Router, dict[str, Stub]]:
    config = parse_config({
        "upstreams": {"a": {"base_url": "http://a/v1"}, "b": {"base_url": "http://b/v1"}},
        "models": [
            {"name": "gpt-4o-mini", "backend": "a", "aliases": ["gpt-3.5-turbo"]},
            {"name": "house", "backend": "b", "upstream_model": "real-name"},
            {"name": "gpt-4o-*", "backend": "b"},
            {"name": "gpt-*", "backend": "a"},
            {"name": "llama-?b", "backend": "b"},
        ],
        "routing": routing,
    })
    backends = {"a": Stub("a"), "b": Stub("b")}
    return Router(config, dict(backends)), backends


def test_exact_alias_and_rename():
    router, b = make_router()
    assert router.resolve("gpt-4o-mini").backend is b["a"]
    alias = router.resolve("gpt-3.5-turbo")
    assert alias.backend is b["a"] and alias.target_model == "gpt-4o-mini"
    assert router.resolve("house").target_model == "real-name"


def test_exact_wins_over_patterns_and_patterns_go_in_order():
    router, b = make_router()
    # "gpt-4o-mini" matches both patterns but is an exact name.
    assert router.resolve("gpt-4o-mini").backend is b["a"]
    assert router.resolve("gpt-4o-2024-08-06").backend is b["b"]
    assert router.resolve("gpt-4.1").backend is b["a"]
    assert router.resolve("gpt-4.1").target_model == "gpt-4.1"
    assert router.resolve("llama-7b").backend is b["b"]
    with pytest.raises(ModelNotFound):
        router.resolve("llama-70b")  # '?' is exactly one character


def test_unknown_model_404_unless_default():
    router, _ = make_router()
    with pytest.raises(ModelNotFound) as err:
        router.resolve("claude")
    assert err.value.status == 404 and err.value.code == "model_not_found"
    router, b = make_router(default_backend="b")
    route = router.resolve("claude")
    assert route.backend is b["b"] and route.target_model == "claude" and route.rule is None
