"""On-demand local models with real workers: the first request loads the model and waits,
concurrent first requests share one load, a stream starts when the model is ready, an idle
model stops after its TTL, a failed or slow load is a 503 with Retry-After and a later
request loads it; the GPU a worker gets comes from the budget."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx

from llm_gateway.backends.memory import model_file

from local_support import alive, wait_until
from on_demand_support import OnDemandGateway, gone


async def _stream_first_byte(gateway: OnDemandGateway, model: str) -> tuple[float, str]:
    """Stream a chat; (wall time of the first body byte, the whole text)."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "stream": True}
    async with httpx.AsyncClient(timeout=90) as client, client.stream(
            "POST", gateway.url + "/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        first, chunks = None, []
        async for chunk in reply.aiter_text():
            first = first or time.time()
            chunks.append(chunk)
    assert first is not None
    return first, "".join(chunks)


async def test_first_requests_load_the_model_once_and_wait(make_on_demand) -> None:
    gateway = make_on_demand({"a": {"idle_unload_seconds": 2}, "b": {}})
    assert gateway.states() == {"a": "unloaded", "b": "unloaded"}
    assert gateway.pids("a") == [] and gateway.pids("b") == []
    listed = {m["id"] for m in httpx.get(gateway.url + "/models").json()["data"]}
    assert {"a", "b"} <= listed  # every model, loaded or not
    assert httpx.get(gateway.server.base + "/readyz").status_code == 200

    client = gateway.aclient()
    asked = time.time()
    answers = await asyncio.gather(
        _stream_first_byte(gateway, "a"),
        *(client.chat.completions.create(model="a", max_tokens=2, temperature=0,
                                         messages=[{"role": "user", "content": f"Hi {i}"}])
          for i in range(3)))
    (first_byte, text), *replies = answers
    assert "data: [DONE]" in text and all(r.choices[0].message.content for r in replies)
    slot = gateway.residency.slots["a"]
    assert slot.loaded_at is not None and slot.load_seconds is not None
    # The stream's first byte came once the model was ready, a load's time after asking.
    assert first_byte >= slot.loaded_at and first_byte - asked >= slot.load_seconds * 0.9
    assert gateway.metric("llm_gateway_local_model_loads_total", model="a", outcome="ok") == 1
    (pid,) = gateway.pids("a")
    assert slot.loads == 1 and gateway.backend("a").pool.workers[0].generation == 1
    view = gateway.models()["a"]
    assert view["state"] == "loaded" and view["loads"] == 1 and view["load_seconds"] > 0
    assert view["estimated_mib"] == 100 and view["used_mib"] > 50  # its worker's real RSS
    assert view["last_used"] is not None and gateway.models()["b"]["state"] == "unloaded"

    # Idle for idle_unload_seconds: stopped.
    gateway.wait_state("a", "unloaded", timeout=15)
    assert gone([pid]) and gateway.states()["b"] == "unloaded"
    assert gateway.metric("llm_gateway_local_model_unloads_total", model="a",
                          reason="idle") == 1
    assert gateway.metric("llm_gateway_local_models_loaded") == 0


def test_a_failed_load_is_a_503_and_a_later_request_loads(make_on_demand, tmp_path: Path) -> None:
    late = tmp_path / "late.gguf"  # not there yet: the worker exits at start
    gateway = make_on_demand({"late": {"model": str(late)}})
    reply = gateway.chat("late")
    assert reply.status_code == 503 and int(reply.headers["retry-after"]) >= 1
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed" and error["type"] == "server_error"
    assert error["message"].startswith("The local model 'late' failed to load: its worker")
    assert set(error) == {"message", "type", "param", "code"}
    view = gateway.models()["late"]
    assert view["state"] == "unloaded" and "exited or reported an error" in view["last_error"]
    assert gateway.metric("llm_gateway_local_model_loads_total", model="late",
                          outcome="failed") == 1

    default = model_file("default")
    assert default is not None
    os.symlink(default, late)
    gateway.ok("late")
    assert gateway.states()["late"] == "loaded" and gateway.models()["late"]["last_error"] is None


def test_a_slow_load_is_a_503_then_loads_on_its_own(make_on_demand) -> None:
    gateway = make_on_demand({"slow": {"load_timeout_seconds": 0.3}})
    reply = gateway.chat("slow")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
    assert reply.json()["error"]["code"] == "model_loading"
    assert "waited load_timeout_seconds (0.3 s)" in reply.json()["error"]["message"]
    gateway.wait_state("slow", "loaded", timeout=60)  # the load went on without its waiter
    gateway.ok("slow")
    assert gateway.residency.slots["slow"].loads == 1


def test_the_budget_picks_the_gpu_with_the_most_room(make_on_demand) -> None:
    # No GPU needed: this llama.cpp runs on the CPU whatever it is shown.
    gateway = make_on_demand({"g": {"n_gpu_layers": -1, "memory_mib": 500}},
                   {"gpus": [{"id": 0, "memory_mib": 1000}, {"id": 3, "memory_mib": 3000}],
                    "nvml": "off"})
    gateway.ok("g")
    (pid,) = gateway.pids("g")
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    assert env[b"CUDA_VISIBLE_DEVICES"] == b"3"
    view = gateway.models()["g"]
    assert view["gpus"] == [3] and view["memory"]["gpu3"]["estimated_mib"] == 500
    assert alive(pid)
    wait_until(lambda: gateway.metric("llm_gateway_local_device_memory_mib", device="gpu3",
                                      kind="booked") == 500, 10)
