"""A local worker's stream cut short: the gateway records what the worker says it produced.

Real worker, real SmolLM2 (skipped without the `local` extra, failing in CI as tests/local do).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stream_usage_support import MeterProbe, chunks_without_choices, sse_events

from llm_gateway.backends.local import worker_request_id
from llm_gateway.testing import FakeUpstream

from gateway_support import require_local_extra

require_local_extra()
sys.path.insert(0, str(Path(__file__).parents[1] / "local"))  # its helpers, not its fixtures
from local_support import LocalGateway, chat_body, start_gateway  # noqa: E402

MESSAGES = ("Write a long story about a lighthouse keeper and the sea, with many details.",)


@pytest.fixture(scope="module")
def local(fake: FakeUpstream) -> Iterator[tuple[LocalGateway, MeterProbe]]:
    gateway = start_gateway(fake, {"smol": {"workers": 1}})
    try:
        gateway.wait_ready("smol")
        yield gateway, MeterProbe(gateway.server)
    finally:
        gateway.stop()


def worker_usage(gateway: LocalGateway, request_id: str) -> httpx.Response:
    """The worker's usage log entry under ``request_id`` (the id the worker got: the gateway's
    with the call's own id, `worker_request_id`)."""
    url = gateway.backend("smol").pool.workers[0].url
    return httpx.get(f"{url}/v1/internal/usage/{request_id}", params={"wait": 5}, timeout=10)


def test_whole_local_stream_without_usage_asked(local) -> None:
    gateway, probe = local
    request_id = "req_" + uuid.uuid4().hex
    events = sse_events(gateway.url, "/chat/completions",
                        chat_body(*MESSAGES, max_tokens=5, stream=True), request_id)
    assert events[-1] == b"[DONE]" and chunks_without_choices(events) == []
    m = probe.metered(request_id)
    assert (m.partial, m.outcome, m.usage.completion) == (False, "ok", 5)
    logged = worker_usage(gateway, worker_request_id(probe.call(request_id))).json()
    assert (logged["prompt_tokens"], logged["completion_tokens"]) == (m.usage.prompt, 5)
    assert (logged["partial"], logged["done"]) == (False, True)


def test_local_stream_cut_by_the_client_records_the_worker_counts(local) -> None:
    gateway, probe = local
    whole = gateway.client().chat.completions.create(**chat_body(*MESSAGES, max_tokens=1))
    prompt_tokens = whole.usage.prompt_tokens

    request_id = "req_" + uuid.uuid4().hex
    stream = gateway.client().chat.completions.create(
        **chat_body(*MESSAGES, max_tokens=400, stream=True),
        extra_headers={"x-request-id": request_id})
    read = 0
    for chunk in stream:
        read += bool(chunk.choices and chunk.choices[0].delta.content)
        if read >= 3:
            break
    stream.close()

    m = probe.metered(request_id, timeout=30)
    assert (m.partial, m.outcome) == (True, "client_gone")
    assert m.usage.prompt == prompt_tokens
    assert 3 <= m.usage.completion < 400
    logged = worker_usage(gateway, worker_request_id(probe.call(request_id))).json()
    assert logged["done"] and logged["partial"]
    assert (logged["prompt_tokens"], logged["completion_tokens"]) == \
        (m.usage.prompt, m.usage.completion)


def test_two_calls_with_one_request_id_are_each_counted_by_their_own(local) -> None:
    """A client may send one x-request-id with two calls at once. The worker's usage log and
    the gateway's record of which worker streamed what were keyed on it, so a stream cut
    short was counted by the other call's entry: pay for a 2-token answer, read a long one."""
    gateway, probe = local
    request_id = "req_" + uuid.uuid4().hex
    same_id = {"x-request-id": request_id}
    client = gateway.client()
    long = client.chat.completions.create(**chat_body(*MESSAGES, max_tokens=900, stream=True),
                                          extra_headers=same_id)
    read = 0
    for chunk in long:
        read += bool(chunk.choices and chunk.choices[0].delta.content)
        if read >= 3:
            break
    short = client.chat.completions.create(**chat_body("Say hi.", max_tokens=2, stream=True),
                                           extra_headers=same_id)
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in short) <= 2
    long.close()
    reports = probe.all_metered(request_id, 2)
    (cut,) = [m for m in reports if m.partial]
    (whole,) = [m for m in reports if not m.partial]
    assert whole.usage.completion <= 2
    assert cut.outcome == "client_gone" and 3 <= cut.usage.completion < 900


def test_unknown_request_id_is_a_404(local) -> None:
    gateway, _ = local
    response = worker_usage(gateway, "req_never_seen")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_request"
