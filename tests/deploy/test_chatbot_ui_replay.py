"""chatbot-ui works unchanged: its exact requests, replayed against the gateway with the `local`
overlay's routes (the gateway config of k8s/overlays/local, with a spawned SmolLM2 worker in
place of the worker pods and the fake upstream in place of OpenAI), and the answers read by
chatbot-ui's rules (the legacy app: pages/api/models.ts, pages/api/chat.ts and
utils/server/index.ts):

- models: GET /v1/models, keeping only ids gpt-3.5-turbo, gpt-35-turbo, gpt-4, gpt-4-32k;
- chat: POST /v1/chat/completions with {model, messages (its system prompt first),
  max_tokens: 1000, temperature, stream: true}; a status other than 200 shows the JSON
  body's error.message;
- the stream, event by event: JSON.parse(data); if choices[0].finish_reason != null, stop
  (that chunk's content is dropped); else append choices[0].delta.content. A chunk without
  `choices` throws and breaks the stream; a null content would be shown as "null".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV, require_local_extra

require_local_extra()

ROOT = Path(__file__).resolve().parents[2]
CHATBOT_UI_MODELS = ("gpt-3.5-turbo", "gpt-35-turbo", "gpt-4", "gpt-4-32k")
# chatbot-ui's DEFAULT_SYSTEM_PROMPT.
SYSTEM_PROMPT = ("You are ChatGPT, a large language model trained by OpenAI. Follow the user's "
                 "instructions carefully. Respond using markdown.")
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-chatbot-ui"}


def overlay_config(fake_url: str) -> dict[str, Any]:
    """The local overlay's gateway config, runnable here."""
    config = yaml.safe_load((ROOT / "k8s/overlays/local/gateway-config.yaml").read_text())
    (name,) = config["local"]
    local = config["local"][name]
    del local["discovery"], local["discovery_interval_seconds"]
    # One spawned worker instead of the pods; a context for the prompt plus max_tokens 1000.
    local.update(workers=1, n_ctx=2048, n_threads=1, max_queue=4, startup_timeout_seconds=60,
                 health_interval_seconds=0.5)
    config["upstreams"]["openai"].update(base_url=fake_url, api_key_env="LGW_TEST_UPSTREAM_KEY")
    return config


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream) -> Iterator[str]:
    server = GatewayServer(parse_config(overlay_config(fake.url), env=ENV), env=ENV).start()
    try:
        backend = server.app.state.backends["smollm2"]
        deadline = time.monotonic() + 60
        while not backend.pool.any_healthy():
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        # What the pod's readiness probe asks: chatbot-ui's model can be served.
        assert httpx.get(server.base + "/readyz", timeout=5).status_code == 200
        yield server.base
    finally:
        server.stop()


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event, as eventsource-parser hands it to chatbot-ui."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith(":"):
            continue  # a comment
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def chatbot_ui_text(events: Iterator[str]) -> tuple[str, list[dict], dict]:
    """Read a stream as chatbot-ui does: (shown text, chunks before the end, the last chunk)."""
    text, before = [], []
    for data in events:
        chunk = orjson.loads(data)  # [DONE] never comes first: the finish chunk stops us
        assert chunk.get("choices"), f"a chunk without choices breaks chatbot-ui: {chunk}"
        choice = chunk["choices"][0]
        if choice.get("finish_reason") is not None:
            return "".join(text), before, chunk
        content = choice["delta"].get("content")
        assert content is None or isinstance(content, str)
        # JS's TextEncoder.encode(null) is "null", encode(undefined) is "".
        assert "content" not in choice["delta"] or content is not None, \
            f"chatbot-ui would show 'null': {chunk}"
        text.append(content or "")
        before.append(chunk)
    raise AssertionError("the stream ended without a finish_reason: chatbot-ui never closes")


def test_models_list_has_a_model_chatbot_ui_keeps(gateway: str) -> None:
    response = httpx.get(gateway + "/v1/models", headers=HEADERS, timeout=10)
    assert response.status_code == 200
    ids = [model["id"] for model in response.json()["data"]]
    kept = [i for i in ids if i in CHATBOT_UI_MODELS]
    assert "gpt-3.5-turbo" in kept


def test_chat_stream_reads_as_chatbot_ui_reads_it(gateway: str) -> None:
    body = {
        "model": "gpt-3.5-turbo",
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "Say hello to me."},
        ],
        "max_tokens": 1000,
        "temperature": 1,
        "stream": True,
    }
    with httpx.stream("POST", gateway + "/v1/chat/completions", headers=HEADERS,
                      content=orjson.dumps(body), timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-lgw-backend"] == "smollm2"  # the local model, by its alias
        text, before, last = chatbot_ui_text(sse_events(response.iter_lines()))
    assert text.strip()
    assert before, "no content chunk before the finish"
    assert last["choices"][0]["finish_reason"] in ("stop", "length")
    # chatbot-ui drops the finishing chunk's content: it must carry none.
    assert not last["choices"][0].get("delta", {}).get("content")


@pytest.mark.parametrize(("change", "status"), [
    ({"model": "no-such-model"}, 404),
    ({"temperature": 7}, 400),
])
def test_errors_are_json_with_a_message_chatbot_ui_shows(gateway: str, change, status) -> None:
    body = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 1000, "temperature": 1, "stream": True, **change}
    response = httpx.post(gateway + "/v1/chat/completions", headers=HEADERS,
                          content=orjson.dumps(body), timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
