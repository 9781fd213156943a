"""Eviction with real workers under a memory budget that holds two models: the least
recently used idle one goes; a busy one stays (the request spills to its fallback or waits);
a pinned one stays; exclusive groups swap, together groups stay."""

from __future__ import annotations

import threading

import httpx
import orjson

from llm_gateway.testing import FakeUpstream

from local_support import wait_until
from on_demand_support import NO_END, TWO_FIT, gone


def test_a_third_model_evicts_the_least_recently_used(make_on_demand) -> None:
    gateway = make_on_demand({"a": {}, "b": {}, "c": {}}, TWO_FIT)
    for name in "aba":
        gateway.ok(name)
    b_pids = gateway.pids("b")
    assert gateway.states() == {"a": "loaded", "b": "loaded", "c": "unloaded"}
    gateway.ok("c")
    assert gateway.states() == {"a": "loaded", "b": "unloaded", "c": "loaded"}
    assert gone(b_pids)
    assert gateway.metric("llm_gateway_local_model_evictions_total", model="b",
                          reason="memory") == 1
    devices = {d["device"]: d for d in httpx.get(
        gateway.server.base + "/admin/models", timeout=10,
        headers={"authorization": "Bearer adm-on-demand-test"}).json()["devices"]}
    assert devices["cpu"]["budget_mib"] == 250 and devices["cpu"]["booked_mib"] >= 200


def test_busy_and_pinned_models_stay(make_on_demand, fake: FakeUpstream) -> None:
    gateway = make_on_demand({"pinned": {"pinned": True}, "busy": {"n_ctx": 512},
                    "spills": {"fallback": "gpt-4o-mini"}, "waits": {}}, TWO_FIT)
    gateway.ok("pinned")
    gateway.ok("busy")  # both loaded; pinned is the least recently used
    body = {"model": "busy", "messages": [{"role": "user", "content": "Count to 500."}],
            "max_tokens": 400, "temperature": 0, "stream": True, "logit_bias": NO_END}
    waited: list[httpx.Response] = []
    with httpx.stream("POST", gateway.url + "/chat/completions", json=body,
                      timeout=90) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # it is streaming
        # Nothing can be evicted: busy is busy, pinned is pinned. One request spills...
        spilled = gateway.chat("spills")
        assert spilled.status_code == 200 and spilled.headers["x-lgw-backend"] == "openai"
        assert fake.calls["POST /v1/chat/completions"] == 1
        # ...the other, with no fallback, waits.
        waiter = threading.Thread(target=lambda: waited.append(gateway.chat("waits")))
        waiter.start()
        wait_until(lambda: gateway.models()["waits"]["waiting"] == 1, 10)
        models = gateway.models()
        assert models["waits"]["state"] == "unloaded" and models["busy"]["in_flight"] == 1
        assert gateway.states()["busy"] == "loaded" and not waited
        events = [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]
    # The stream ran to its end on a worker nobody stopped...
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(bool(e["choices"] and e["choices"][0]["delta"].get("content"))
               for e in events) > 300
    waiter.join(90)
    # ...then busy, idle at last, made the room; pinned stayed.
    assert waited and waited[0].status_code == 200, waited
    assert gateway.states() == {"pinned": "loaded", "busy": "unloaded", "spills": "unloaded",
                                "waits": "loaded"}


def test_groups_exclusive_swap_and_together_stay(make_on_demand) -> None:
    groups = {"swap": {"models": ["x", "y"], "mode": "exclusive"},
              "pair": {"models": ["a", "b"], "mode": "together"}}
    gateway = make_on_demand({"x": {}, "y": {}, "a": {}, "b": {}}, {**TWO_FIT, "groups": groups})
    gateway.ok("x")
    gateway.ok("y")  # there was room for both: they exclude each other
    assert gateway.states() == {"x": "unloaded", "y": "loaded", "a": "unloaded",
                                "b": "unloaded"}
    assert gateway.metric("llm_gateway_local_model_evictions_total", model="x",
                          reason="exclusive") == 1
    gateway.ok("a")
    gateway.ok("y")  # a is the least recently used now, but it goes with b
    gateway.ok("b")
    assert gateway.states() == {"x": "unloaded", "y": "unloaded", "a": "loaded",
                                "b": "loaded"}
    assert gateway.models()["a"]["groups"] == ["pair"]
