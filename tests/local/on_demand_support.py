"""Helpers for the on-demand tests: gateways whose local models (real workers of the default
model, under several names) load at their first request, with a memory budget.

Every model books `memory_mib: 100` of host memory, so `cpu_memory_mib: 250` holds two of
them: the third one evicts. Small contexts and one sequence keep each load to a worker's start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.backends.residency import Residency
from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV
from local_support import LocalGateway, alive, config_with_local, wait_until

ADMIN_KEY = "adm-on-demand-test"
ON_DEMAND = {"load": "on_demand", "memory_mib": 100, "n_ctx": 256, "parallel": 1}
TWO_FIT = {"cpu_memory_mib": 250, "nvml": "off"}
# SmolLM2's end-of-generation tokens (<|endoftext|>, <|im_start|>, <|im_end|>): banned, a
# stream runs to max_tokens, which keeps its model busy for a known while.
NO_END = {"0": -100, "1": -100, "2": -100}


@dataclass
class OnDemandGateway(LocalGateway):
    @property
    def residency(self) -> Residency:
        residency = self.server.app.state.residency
        assert residency is not None
        return residency

    def models(self) -> dict[str, dict[str, Any]]:
        """GET /admin/models, by model name."""
        reply = httpx.get(self.server.base + "/admin/models", timeout=10,
                          headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert reply.status_code == 200, reply.text
        return {m["model"]: m for m in reply.json()["data"]}

    def states(self) -> dict[str, str]:
        return {name: slot.state for name, slot in self.residency.slots.items()}

    def pids(self, name: str) -> list[int]:
        return self.backend(name).worker_pids()

    def chat(self, model: str, *, max_tokens: int = 2, **body: Any) -> httpx.Response:
        return httpx.post(self.url + "/chat/completions", timeout=90, json={
            "model": model, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": max_tokens, "temperature": 0, **body})

    def ok(self, model: str) -> httpx.Response:
        reply = self.chat(model)
        assert reply.status_code == 200, reply.text
        return reply

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.server.base + "/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and labels.items() <= s.labels.items())

    def wait_state(self, name: str, state: str, timeout: float = 30) -> None:
        wait_until(lambda: self.states()[name] == state, timeout,
                   f"{name} not {state}: {self.states()}")


def start_on_demand(fake: FakeUpstream, local: dict[str, dict], placement: dict | None = None,
                    ) -> OnDemandGateway:
    """A gateway with these local models (ON_DEMAND unless overridden), routed by name."""
    data = config_with_local(fake.url, {n: {**ON_DEMAND, **cfg} for n, cfg in local.items()})
    data["placement"] = placement or {"nvml": "off"}
    data["models"].insert(0, {"name": "gpt-4o-mini", "backend": "openai"})
    env = {**ENV, "LLM_GATEWAY_ADMIN_KEY": ADMIN_KEY}
    return OnDemandGateway(GatewayServer(parse_config(data, env=env), env=env).start())


def gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
