"""A traced SDK call to the real local model: the worker's spans (queue wait, prompt
evaluation, decode) hang under the gateway's attempt span, in one trace, as a real OTLP/HTTP
receiver gets them; no prompt text in any span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer
from llm_gateway.testing.otlp_receiver import OtlpReceiver, ReceivedSpan

from gateway_support import ENV
from local_support import LocalGateway, config_with_local

PROMPT = "Name a colour. zebra-prompt-marker"


@pytest.fixture
def traced(fake: FakeUpstream, monkeypatch) -> Iterator[tuple[LocalGateway, OtlpReceiver]]:
    # The worker exports in batches; a short delay so the test need not wait 5 s (inherited:
    # spawned workers get the gateway's environment).
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    with OtlpReceiver() as receiver:
        data = config_with_local(fake.url, {"smol": {}})
        data["tracing"] = {"enabled": True, "endpoint": receiver.url}
        gateway = LocalGateway(GatewayServer(parse_config(data, env=ENV), env=ENV).start())
        try:
            gateway.wait_ready("smol")
            yield gateway, receiver
        finally:
            gateway.stop()


def _arrived(gateway: LocalGateway):
    tracer = gateway.server.app.state.tracer

    def arrived(spans: list[ReceivedSpan]) -> bool:
        tracer.flush()  # the gateway's spans end just after the answer's last byte
        return {"chat smol", "generate smol", "llm_worker.decode"} <= {s.name for s in spans}

    return arrived


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_the_workers_spans_continue_the_gateways_attempt(traced):
    gateway, receiver = traced
    for stream in (False, True):
        receiver.clear()
        client = gateway.client()
        messages = [{"role": "user", "content": PROMPT}]
        if stream:
            chunks = client.chat.completions.create(model="smol", messages=messages,
                                                    max_tokens=6, temperature=0, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            answer = client.chat.completions.create(model="smol", messages=messages,
                                                    max_tokens=6, temperature=0)
            assert answer.choices[0].message.content
        spans = receiver.wait_for(_arrived(gateway), timeout=20)
        root = _one(spans, "chat smol")
        attempt = _one(spans, "attempt smol")
        work = _one(spans, "generate smol")
        assert attempt.parent_id == root.span_id
        assert (work.trace_id, work.parent_id) == (root.trace_id, attempt.span_id)
        assert work.service == "llm-gateway-worker" and root.service == "llm-gateway"
        steps = {s.name: s for s in spans if s.parent_id == work.span_id}
        assert set(steps) == {"llm_worker.queue_wait", "llm_worker.prompt_eval",
                              "llm_worker.decode"}
        queue, prompt, decode = (steps["llm_worker.queue_wait"], steps["llm_worker.prompt_eval"],
                                 steps["llm_worker.decode"])
        assert queue.start_ns <= queue.end_ns <= prompt.start_ns + 1_000
        assert prompt.end_ns <= decode.start_ns + 1_000 and decode.start_ns <= decode.end_ns
        assert prompt.attributes["gen_ai.usage.input_tokens"] > 0
        assert "gen_ai.usage.cached_tokens" in prompt.attributes
        assert decode.attributes["gen_ai.usage.output_tokens"] > 0
        assert root.attributes["gen_ai.usage.input_tokens"] == \
            work.attributes["gen_ai.usage.input_tokens"]
        said = repr([(s.attributes, s.events) for s in spans]) + repr(receiver.raw)
        assert "zebra-prompt-marker" not in said
