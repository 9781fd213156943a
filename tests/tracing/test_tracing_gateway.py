"""Spans of SDK calls through the gateway to the fake upstream, as a real OTLP/HTTP receiver
gets them: the tree, the GenAI and gateway attributes, the trace continued from the client's
traceparent and handed on upstream, and nothing secret in any span."""

from __future__ import annotations

import openai

from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.otlp_receiver import OtlpReceiver

from auth_support import keys_gateways, new_key
from gateway_support import UPSTREAM_KEY, gateway_config
from tracing_support import (
    CLIENT_SPAN,
    CLIENT_TRACE,
    PROMPT,
    TRACEPARENT,
    children,
    everything_said,
    named,
    spans_until,
    tracing,
)

CLIENT_KEY = "sk-client-secret-4711"


def _client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)


def _has(name: str):
    return lambda spans: any(s.name == name for s in spans)


def test_a_chat_call_is_one_trace_from_the_client_to_the_upstream(make_gateway, fake: FakeUpstream,
                                                                  receiver: OtlpReceiver):
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    answer = _client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}],
        temperature=0.3, max_tokens=20, extra_headers={"traceparent": TRACEPARENT})
    assert answer.choices[0].message.content
    spans = spans_until(gateway, receiver, _has("chat gpt-4o-mini"))
    root = named(spans, "chat gpt-4o-mini")
    # The client's trace goes on: the request span is its span's child.
    assert (root.trace_id, root.parent_id, root.kind) == (CLIENT_TRACE, CLIENT_SPAN, "server")
    below = {s.name: s for s in children(spans, root)}
    # Not deterministic (temperature 0.3): grouping let it straight through, and says nothing;
    # auth.mode none looks no key up and no limits apply: no spans for them either.
    assert set(below) == {"attempt openai"}
    attempt = below["attempt openai"]
    assert attempt.kind == "client"
    assert attempt.attributes["llm_gateway.backend"] == "openai"
    assert attempt.attributes["http.response.status_code"] == 200
    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.request.temperature"] == 0.3
    assert attrs["gen_ai.request.max_tokens"] == 20
    assert attrs["gen_ai.response.model"] == answer.model
    assert attrs["gen_ai.response.id"] == answer.id
    assert answer.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert attrs["llm_gateway.backend"] == "openai"
    assert attrs["llm_gateway.key_id"]  # the key's id, never the key
    assert attrs["http.response.status_code"] == 200
    assert not root.error
    # The upstream continues our attempt's span, not the client's.
    sent = fake.requests[-1].headers["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"
    # Nothing secret, and (by default) no prompt or completion, anywhere.
    said = everything_said(receiver)
    for secret in (CLIENT_KEY, UPSTREAM_KEY, "xyzzy-prompt-marker"):
        assert secret not in said
    assert answer.choices[0].message.content not in said


def test_grouping_has_a_span_when_it_takes_part(make_gateway, fake, receiver):
    """A deterministic call leads a backend call (a miss: the wait until it starts), the same
    call again is answered from the cache (a hit: no attempt of its own)."""
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    client = _client(gateway)
    for _ in range(2):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}],
            temperature=0)
    spans = spans_until(gateway, receiver,
                        lambda got: sum(s.name == "chat gpt-4o-mini" for s in got) == 2)
    first, second = sorted((s for s in spans if s.name == "chat gpt-4o-mini"),
                           key=lambda s: s.start_ns)
    below = {s.name: s for s in children(spans, first)}
    assert below["gateway.grouping"].attributes["llm_gateway.grouping"] == "miss"
    grouping, attempt = below["gateway.grouping"], below["attempt openai"]
    assert first.start_ns <= grouping.start_ns <= grouping.end_ns <= attempt.start_ns
    assert first.attributes["llm_gateway.cache"] == "miss"
    below = {s.name: s for s in children(spans, second)}
    assert set(below) == {"gateway.grouping"}
    assert below["gateway.grouping"].attributes["llm_gateway.grouping"] == "hit"
    assert second.attributes["llm_gateway.cache"] == "hit"
    assert len(fake.requests) == 1


def test_a_stream_has_its_first_token_and_its_attempt_ends_with_it(make_gateway, fake,
                                                                   receiver):
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    stream = _client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    spans = spans_until(gateway, receiver, _has("chat gpt-4o-mini"))
    root = named(spans, "chat gpt-4o-mini")
    assert root.attributes["gen_ai.response.model"] == chunks[0].model  # from the first chunk
    assert root.attributes["gen_ai.response.id"] == chunks[0].id
    assert root.parent_id == ""  # no traceparent: a new trace
    assert root.attributes["llm_gateway.stream"] is True
    assert root.attributes["llm_gateway.outcome"] == "ok"
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    first = [e for e in root.events if e[0] == "gen_ai.first_token"]
    assert len(first) == 1
    attempt = named(spans, "attempt openai")
    assert attempt.parent_id == root.span_id
    assert attempt.attributes["llm_gateway.outcome"] == "ok"
    assert root.start_ns <= attempt.start_ns <= attempt.end_ns <= root.end_ns
    assert "xyzzy-prompt-marker" not in everything_said(receiver)


def test_content_is_recorded_only_when_asked(make_gateway, fake, receiver):
    gateway = make_gateway(gateway_config(
        fake.url, tracing=tracing(receiver, record_content=True)))
    answer = _client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    root = named(spans_until(gateway, receiver, _has("chat gpt-4o-mini")), "chat gpt-4o-mini")
    prompt = root.event("gen_ai.content.prompt")
    completion = root.event("gen_ai.content.completion")
    assert prompt is not None and "xyzzy-prompt-marker" in prompt["gen_ai.prompt"]
    assert completion == {"gen_ai.completion": answer.choices[0].message.content}
    assert CLIENT_KEY not in everything_said(receiver)


def test_a_refused_request_is_an_error_span(make_gateway, fake, receiver):
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    try:
        _client(gateway).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError:
        pass
    else:
        raise AssertionError("an unknown model must be a 404")
    root = named(spans_until(gateway, receiver, _has("chat no-such-model")),
                 "chat no-such-model")
    assert root.error
    assert root.attributes["http.response.status_code"] == 404
    assert root.attributes["error.type"] == "model_not_found"


def test_the_request_log_line_names_the_trace(caplog, make_gateway, fake, receiver):
    import logging
    import time

    caplog.set_level(logging.INFO, logger="llm_gateway.access")
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    _client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": TRACEPARENT})
    root = named(spans_until(gateway, receiver, _has("chat gpt-4o-mini")), "chat gpt-4o-mini")
    deadline = time.monotonic() + 5
    while not (lines := [r for r in caplog.records if r.name == "llm_gateway.access"]):
        assert time.monotonic() < deadline, "no request line"
        time.sleep(0.02)
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert (fields["trace_id"], fields["span_id"]) == (root.trace_id, root.span_id)


def test_an_unsampled_trace_exports_nothing_but_still_propagates(caplog, make_gateway, fake,
                                                                 receiver):
    import logging
    import time

    caplog.set_level(logging.INFO, logger="llm_gateway.access")
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver, sample_ratio=0.0)))
    _client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    gateway.app.state.tracer.flush()
    time.sleep(0.3)
    assert receiver.spans == []
    version, trace_id, span_id, flags = fake.requests[-1].headers["traceparent"].split("-")
    assert version == "00" and int(trace_id, 16) and int(span_id, 16)
    assert not int(flags, 16) & 1  # not sampled: the upstream is told not to record either
    deadline = time.monotonic() + 5
    while not (lines := [r for r in caplog.records if r.name == "llm_gateway.access"]):
        assert time.monotonic() < deadline, "no request line"
        time.sleep(0.02)
    assert lines[0].fields["trace_id"] == trace_id  # type: ignore[attr-defined]


def test_each_deployment_tried_is_an_attempt_span(make_gateway, fake, receiver):
    config = gateway_config(fake.url, tracing=tracing(receiver))
    upstream = {**config["upstreams"]["openai"], "retries": {"attempts": 0}}
    config["upstreams"] = {"first": upstream, "second": upstream}
    config["models"] = [{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "first"}, {"backend": "second", "priority": 1}]}]
    gateway = make_gateway(config)
    fake.fail_next(503)
    _client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}])
    spans = spans_until(gateway, receiver, _has("chat m"))
    root = named(spans, "chat m")
    first, second = named(spans, "attempt first"), named(spans, "attempt second")
    assert first.parent_id == second.parent_id == root.span_id
    assert first.error and first.attributes["http.response.status_code"] == 503
    assert first.end_ns <= second.start_ns
    assert not second.error and second.attributes["llm_gateway.deployment"] == "second"
    assert root.attributes["llm_gateway.attempts"] == 2
    assert root.attributes["llm_gateway.deployment"] == "second"
    # Each try went out under its own attempt's span.
    sent = [r.headers["traceparent"].split("-")[2] for r in fake.requests[-2:]]
    assert sent == [first.span_id, second.span_id]


def test_a_passthrough_request_has_its_attempt_span(make_gateway, fake, receiver):
    """Files, batches and the other relayed paths: the upstream call is an attempt span too,
    and the upstream continues it."""
    gateway = make_gateway(gateway_config(fake.url, tracing=tracing(receiver)))
    listed = _client(gateway).with_options(default_headers={"traceparent": TRACEPARENT}) \
        .files.list()
    assert listed.data is not None
    spans = spans_until(gateway, receiver, _has("GET /v1/files"))
    root = named(spans, "GET /v1/files")
    assert (root.trace_id, root.parent_id) == (CLIENT_TRACE, CLIENT_SPAN)
    attempt = named(spans, "attempt openai")
    assert attempt.parent_id == root.span_id and attempt.kind == "client"
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["llm_gateway.outcome"] == "ok"
    assert root.start_ns <= attempt.start_ns <= attempt.end_ns <= root.end_ns
    sent = fake.requests[-1].headers["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{attempt.span_id}-01"


def test_auth_and_limits_have_spans_where_they_do_something(fake, receiver, tmp_path):
    """Keys mode: every call's key is looked up (gateway.auth); a key of team "research"
    (rpm 60) is checked against its limits (gateway.limits), a key with none is not."""
    started = keys_gateways(fake, tmp_path, tracing=tracing(receiver))
    gateway = next(started)(tracing=tracing(receiver))
    try:
        _, limited = new_key(gateway, team="research")
        _, free = new_key(gateway)
        for key, model in ((limited, "gpt-4o-mini"), (free, "gpt-4o")):
            openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0)\
                .chat.completions.create(model=model, temperature=0.5,
                                         messages=[{"role": "user", "content": PROMPT}])
        spans = spans_until(gateway, receiver,
                            lambda got: _has("chat gpt-4o-mini")(got) and _has("chat gpt-4o")(got))
        below = {name: {s.name for s in children(spans, named(spans, name))}
                 for name in ("chat gpt-4o-mini", "chat gpt-4o")}
        assert below["chat gpt-4o-mini"] == {"gateway.auth", "gateway.limits", "attempt openai"}
        assert below["chat gpt-4o"] == {"gateway.auth", "attempt openai"}
    finally:
        next(started, None)
