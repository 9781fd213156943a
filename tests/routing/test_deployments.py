"""A route with several deployments, through a real gateway, by the official SDK: two fake
OpenAI upstreams on 127.0.0.1 (each with its own key), faults injected into one of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import openai
import pytest
from accounting.stream_usage_support import ledger_row

from llm_gateway.config import parse_config
from llm_gateway.testing.fake_upstream import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, gateway_env, keys_config, new_key

KEYS = {"LGW_KEY_A": "sk-a", "LGW_KEY_B": "sk-b", "LGW_KEY_C": "sk-c"}
CHAT = "POST /v1/chat/completions"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with FakeUpstream(api_key="sk-a") as a, FakeUpstream(api_key="sk-b") as b, \
            FakeUpstream(api_key="sk-c") as c:
        yield {"a": a, "b": b, "c": c}


@pytest.fixture(autouse=True)
def _clean(fakes: dict[str, FakeUpstream]) -> None:
    for fake in fakes.values():
        fake.reset()


def _upstream(fake: FakeUpstream, key_env: str) -> dict:
    return {"base_url": fake.url, "api_key_env": key_env, "retries": {"attempts": 0},
            "timeouts": {"connect": 2, "read": 5, "total": 10}}


@pytest.fixture
def start(fakes: dict[str, FakeUpstream], tmp_path) -> Iterator[Callable[..., GatewayServer]]:
    with ExitStack() as running:
        def start(models: list[dict], cooldown: dict | None = None) -> GatewayServer:
            data = {
                "upstreams": {name: _upstream(fake, f"LGW_KEY_{name.upper()}")
                              for name, fake in fakes.items()},
                "models": models,
                "routing": {"cooldown": cooldown or {"base_seconds": 30}},
                "storage": {"data_dir": str(tmp_path)},
            }
            env = gateway_env(**KEYS)
            return running.enter_context(GatewayServer(parse_config(data, env=env), env=env))

        yield start


def _client(server: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="sk-client", max_retries=0)


def _chat(client: openai.OpenAI, model: str = "m", **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kw)


def test_calls_spread_by_weight(start, fakes) -> None:
    server = start([{"name": "m", "deployments": [
        {"backend": "a", "weight": 3}, {"backend": "b", "weight": 1}]}])
    client = _client(server)
    served = [_chat(client).headers["x-lgw-deployment"] for _ in range(400)]
    share = served.count("a") / len(served)
    # Binomial(400, 0.75): sd 0.022, so 0.66..0.84 is four sd either way.
    assert 0.66 <= share <= 0.84, share
    assert fakes["a"].calls[CHAT] + fakes["b"].calls[CHAT] == 400
    assert fakes["b"].calls[CHAT] == served.count("b")
    listed = [model.id for model in client.models.list()]
    assert listed.count("m") == 1  # the route is one model, however many deployments


def test_a_429_moves_on_cools_down_and_is_probed_back(start, fakes) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a", "name": "first", "upstream_model": "gpt-a"},
        {"backend": "b", "priority": 1}]}],
        cooldown={"base_seconds": 0.5, "max_retry_after_seconds": 1.5})
    client = _client(server)
    fakes["a"].fail_next(429, retry_after="1")
    answer = _chat(client)
    assert answer.headers["x-lgw-deployment"] == "b"
    assert answer.headers["x-lgw-backend"] == "b"
    assert "x-lgw-fallback" not in answer.headers
    assert answer.parse().choices[0].message.content
    # Cooling (Retry-After 1 s, longer than the 0.5 s base): "a" is skipped.
    for _ in range(3):
        assert _chat(client).headers["x-lgw-deployment"] == "b"
    assert fakes["a"].calls[CHAT] == 1
    state = _deployments(server)["m"]
    assert state["first"]["state"] == "cooling" and state["first"]["last_failure"] == "rate_limit"
    assert state["first"]["cooldown_remaining_seconds"] > 0
    time.sleep(1.1)
    probe = _chat(client)  # one probe goes to "a", which answers: healthy again
    assert probe.headers["x-lgw-deployment"] == "first"
    assert fakes["a"].requests[-1].json["model"] == "gpt-a"
    assert _deployments(server)["m"]["first"]["state"] == "healthy"
    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'llm_gateway_deployment_retries_total{deployment="first",model="m",' \
           'reason="rate_limit"} 1.0' in metrics
    assert 'llm_gateway_deployment_state{deployment="first",model="m"} 0.0' in metrics


def test_cooldown_grows_with_failures_in_a_row(start, fakes) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a"}, {"backend": "b", "priority": 1}]}],
        cooldown={"base_seconds": 0.3, "max_seconds": 10})
    client = _client(server)
    fakes["a"].fail_next(503, times=2)
    assert _chat(client).headers["x-lgw-deployment"] == "b"  # a failed once: 0.3 s
    first = _deployments(server)["m"]["a"]["cooldown_remaining_seconds"]
    time.sleep(0.35)
    assert _chat(client).headers["x-lgw-deployment"] == "b"  # the probe failed: 0.6 s
    second = _deployments(server)["m"]["a"]
    assert second["failures"] == 2
    assert first <= 0.3 < second["cooldown_remaining_seconds"] <= 0.6
    assert fakes["a"].calls[CHAT] == 2


def test_every_deployment_failing_falls_back_by_reason(start, fakes) -> None:
    server = start([
        {"name": "m", "deployments": [{"backend": "a"}, {"backend": "b"}],
         "fallbacks": ["general"], "rate_limit_fallbacks": ["roomy"]},
        {"name": "roomy", "backend": "c", "upstream_model": "gpt-roomy"},
        {"name": "general", "backend": "c"}])
    client = _client(server)
    fakes["a"].fail_next(429)
    fakes["b"].fail_next(429)
    answer = _chat(client)
    assert answer.headers["x-lgw-fallback"] == "rate_limit; model=roomy"
    assert answer.headers["x-lgw-backend"] == "c"
    assert fakes["c"].requests[-1].json["model"] == "gpt-roomy"
    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'llm_gateway_fallbacks_total{fallback="roomy",model="m",reason="rate_limit"} 1.0' \
        in metrics


def test_context_length_goes_straight_to_its_own_fallback(start, fakes) -> None:
    server = start([
        {"name": "m", "strategy": "priority",
         "deployments": [{"backend": "a"}, {"backend": "b", "priority": 1}],
         "fallbacks": ["general"], "context_window_fallbacks": ["long"]},
        {"name": "long", "backend": "c"}, {"name": "general", "backend": "c"}])
    client = _client(server)
    fakes["a"].fail_next(400, code="context_length_exceeded", message="too long")
    answer = _chat(client)
    assert answer.headers["x-lgw-fallback"] == "context_window; model=long"
    assert fakes["b"].calls[CHAT] == 0  # the same model elsewhere would refuse it too
    assert _deployments(server)["m"]["a"]["state"] == "healthy"  # not the deployment's fault


def test_without_a_fallback_the_last_failure_is_the_answer(start, fakes) -> None:
    server = start([{"name": "m", "deployments": [{"backend": "a"}, {"backend": "b"}],
                     "content_policy_fallbacks": ["other"]},
                    {"name": "other", "backend": "c"}])
    client = _client(server)
    fakes["a"].fail_next(400, code="invalid_value", message="bad temperature")
    fakes["b"].fail_next(400, code="invalid_value", message="bad temperature")
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client)
    assert caught.value.code == "invalid_value"  # the caller's own error: no retry
    assert fakes["a"].calls[CHAT] + fakes["b"].calls[CHAT] == 1
    assert fakes["c"].calls[CHAT] == 0


def test_all_cooling_and_no_fallback_is_a_clear_error(start, fakes) -> None:
    server = start([{"name": "m", "deployments": [{"backend": "a"}, {"backend": "b"}]}])
    client = _client(server)
    fakes["a"].fail_next(500)
    fakes["b"].fail_next(500)
    with pytest.raises(openai.InternalServerError):
        _chat(client)  # both failed: the last failure is the answer
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(client)
    assert caught.value.status_code == 503
    assert caught.value.code == "deployments_unavailable"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert fakes["a"].calls[CHAT] + fakes["b"].calls[CHAT] == 2


def test_no_retry_once_a_stream_has_begun(start, fakes) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a"}, {"backend": "b", "priority": 1}]}])
    client = _client(server)
    fakes["a"].drop_next_stream(after_chunks=2)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    pieces = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            pieces.append(chunk)
    assert len(pieces) >= 2
    assert fakes["b"].calls[CHAT] == 0


def test_a_stream_is_balanced_and_labelled(start, fakes) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a"}, {"backend": "b", "priority": 1}]}])
    client = _client(server)
    fakes["a"].fail_next(502)
    with client.chat.completions.with_streaming_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True) as response:
        assert response.headers["x-lgw-deployment"] == "b"
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text


def test_a_fallback_the_key_may_not_use_is_skipped(fakes, tmp_path) -> None:
    """The fallback list is not a way around a key's model list."""
    models = [{"name": "m", "deployments": [{"backend": "a"}], "fallbacks": ["secret", "open"]},
              {"name": "secret", "backend": "b"}, {"name": "open", "backend": "c"}]
    upstreams = {n: _upstream(f, f"LGW_KEY_{n.upper()}") for n, f in fakes.items()}
    config = keys_config(fakes["a"].url, str(tmp_path), upstreams=upstreams, models=models)
    env = gateway_env(**KEYS)
    with GatewayServer(parse_config(config, env=env), env=env) as server:
        _, key = new_key(server, models=["m", "open"])
        client = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0)
        fakes["a"].fail_next(500)
        answer = _chat(client)
        assert answer.headers["x-lgw-fallback"] == "error; model=open"
        assert fakes["b"].calls[CHAT] == 0
        assert fakes["c"].calls[CHAT] == 1


def _deployments(server: GatewayServer) -> dict[str, dict[str, dict]]:
    reply = Admin(server)("GET", "/admin/deployments")
    assert reply.status_code == 200, reply.text
    return {g["model"]: {d["name"]: d for d in g["deployments"]} for g in reply.json()["data"]}


def test_a_grouped_whole_answer_releases_its_deployment(start, fakes) -> None:
    # temperature 0: grouping leads the call and hands each caller a copy of the answer; the
    # deployment's own watch must still see the answer end (its in-flight count).
    server = start([{"name": "m", "deployments": [{"backend": "a", "name": "only"}]}])
    client = _client(server)
    for _ in range(3):
        assert _chat(client, temperature=0).parse().choices[0].message.content
    assert fakes["a"].calls[CHAT] == 1  # then the cache answered
    assert _deployments(server)["m"]["only"]["inflight"] == 0


def _backend_errors(server: GatewayServer) -> dict[tuple[str, str], float]:
    found = {}
    for line in httpx.get(f"{server.base}/metrics").text.splitlines():
        if line.startswith("llm_gateway_backend_errors_total{"):
            labels, value = line[len("llm_gateway_backend_errors_total{"):].split("} ")
            parts = dict(part.split("=") for part in labels.split(","))
            found[(parts["backend"].strip('"'), parts["code"].strip('"'))] = float(value)
    return found


def test_every_failed_attempt_is_a_backend_error_of_its_own_backend(start, fakes) -> None:
    server = start([{"name": "m", "strategy": "priority", "deployments": [
        {"backend": "a"}, {"backend": "b", "priority": 1}]}],
        cooldown={"base_seconds": 0.01})
    client = _client(server)
    fakes["a"].fail_next(503)
    assert _chat(client).headers["x-lgw-deployment"] == "b"
    assert _backend_errors(server) == {("a", "503"): 1.0}  # the call itself succeeded
    time.sleep(0.05)  # (a's cooldown over)
    fakes["a"].fail_next(503)
    fakes["b"].fail_next(500)
    with pytest.raises(openai.InternalServerError):
        _chat(client)
    # Each once, under its own name: not the route's first backend, not twice for the last.
    assert _backend_errors(server) == {("a", "503"): 2.0, ("b", "500"): 1.0}


def test_a_failed_calls_ledger_row_names_the_backend_only_when_one_was_called(
        start, fakes, tmp_path) -> None:
    server = start([{"name": "m", "deployments": [{"backend": "a"}]}])
    client = _client(server)
    fakes["a"].fail_next(503)
    for request_id in ("tried", "cooling"):  # the second finds its one deployment cooling
        with pytest.raises(openai.APIStatusError):
            _chat(client, extra_headers={"x-request-id": request_id})
    assert fakes["a"].calls[CHAT] == 1
    assert ledger_row(tmp_path / "gateway.db", "tried")["backend"] == "a"
    assert ledger_row(tmp_path / "gateway.db", "cooling")["backend"] == ""
