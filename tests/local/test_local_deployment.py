"""A local pool as one deployment of a balanced route: the pool still picks its worker by the
conversation's prefix (affinity), behind the route's strategy."""

from __future__ import annotations

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV
from local_support import LocalGateway, config_with_local


def test_prefix_affinity_holds_inside_a_local_deployment(fake: FakeUpstream) -> None:
    config = config_with_local(fake.url, {"smol": {"workers": 2}})
    config["models"].append({"name": "pooled", "strategy": "priority", "deployments": [
        {"backend": "smol", "name": "gpus"},
        {"backend": "openai", "priority": 1, "upstream_model": "gpt-4o-mini"}]})
    gateway = LocalGateway(GatewayServer(parse_config(config, env=ENV), env=ENV).start())
    try:
        gateway.wait_ready("smol")
        client = gateway.client()
        workers: dict[int, set[str]] = {}
        for n in range(6):  # six conversations of three turns each
            messages = [{"role": "system", "content": "Answer in one word."},
                        {"role": "user", "content": f"Conversation {n}: name a colour."}]
            for turn in range(3):
                raw = client.chat.completions.with_raw_response.create(
                    model="pooled", messages=messages, max_tokens=2, temperature=0)
                assert raw.headers["x-lgw-deployment"] == "gpus"
                workers.setdefault(n, set()).add(raw.headers["x-lgw-worker"])
                answer = raw.parse().choices[0].message.content or ""
                messages += [{"role": "assistant", "content": answer},
                             {"role": "user", "content": f"And another ({turn})?"}]
        assert all(len(seen) == 1 for seen in workers.values()), workers  # each stayed put
        assert len(set().union(*workers.values())) == 2  # and both workers were used
        assert fake.calls["POST /v1/chat/completions"] == 0
    finally:
        gateway.stop()
