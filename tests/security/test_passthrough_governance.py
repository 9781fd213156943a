"""Issue 13, defect 2: the passthrough (files, batches, images, audio...) is governed like the
model endpoints: endpoint families allowed per gateway, team and key; a `model` named in a
JSON or multipart body checked and routed; rpm limits counted; `passthrough_backend: off`.

A real gateway in `auth.mode: keys` in front of the fake upstream (a real HTTP server).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from auth_support import Admin, call, keys_gateways, new_key

AUDIO = bytes(range(256)) * 200  # 51,200 bytes of "audio"


@pytest.fixture
def start(fake, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A gateway in keys mode in front of `fake`: `start(**config overrides)`."""
    yield from keys_gateways(fake, tmp_path)


def refused(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code, error
    assert set(error) == {"message", "type", "param", "code"}
    return error


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "lgwtest") -> bytes:
    """A form in the order given (httpx always puts plain fields before files)."""
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                + value + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


FORM = {"content-type": "multipart/form-data; boundary=lgwtest"}
BATCH = {"input_file_id": "file-1", "endpoint": "/v1/chat/completions",
         "completion_window": "24h"}


def test_a_model_restricted_key_is_refused_other_models_on_images_audio_batches(start, fake):
    gw = start()
    _, key = new_key(gw, models=["gpt-image-1", "tts-1", "whisper-1"])
    for path, body in [
        ("/images/generations", {"model": "dall-e-3", "prompt": "a cat"}),
        ("/audio/speech", {"model": "tts-1-hd", "input": "hello", "voice": "alloy"}),
        ("/batches", {"model": "gpt-4o", "input_file_id": "file-1",
                      "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    ]:
        error = refused(call(gw, key, "POST", path, json=body), 403, "model_not_allowed")
        assert error["param"] == "model" and body["model"] in error["message"]
    assert sum(fake.calls.values()) == 0  # nothing reached the upstream

    images = call(gw, key, "POST", "/images/generations",
                  json={"model": "gpt-image-1", "prompt": "a cat", "n": 2})
    assert images.status_code == 200 and len(images.json()["data"]) == 2
    speech = call(gw, key, "POST", "/audio/speech",
                  json={"model": "tts-1", "input": "hello", "voice": "alloy"})
    assert speech.status_code == 200 and speech.headers["content-type"] == "audio/mpeg"
    batch = call(gw, key, "POST", "/batches", json={  # its input file: the key's own
        "input_file_id": upload(gw, key).json()["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert batch.status_code == 200 and batch.json()["id"].startswith("batch_")
    # A model that is not a string cannot be checked: refused, not forwarded.
    refused(call(gw, key, "POST", "/images/generations", json={"model": ["gpt-image-1"]}),
            400, None)


def test_a_batch_runs_only_models_the_key_may_use(start, fake):
    # Files made directly at the provider (the fake) are nobody's: forwarded when configured.
    gw = start(auth={"mode": "keys", "unknown_objects": "forward"})
    _, key = new_key(gw, models=["gpt-4o-mini"])
    _, anyone = new_key(gw)

    def batch(who: str, file_id: str) -> httpx.Response:
        return call(gw, who, "POST", "/batches", json={**BATCH, "input_file_id": file_id})

    def line(n: int, model: str) -> bytes:
        return json.dumps({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": model, "messages": []}}).encode() + b"\n"

    refused(batch(key, "../../admin"), 400, None)  # an id, not a path
    fake.files["file-mine"] = line(1, "gpt-4o-mini") * 3
    # The file may have been uploaded by anyone, anywhere: its lines are what would run.
    fake.files["file-other"] = line(1, "gpt-4o-mini") + line(2, "gpt-4o")
    fake.files["file-junk"] = b"not json\n"
    error = refused(batch(key, "file-other"), 403, "model_not_allowed")
    assert "'gpt-4o'" in error["message"]
    refused(batch(key, "file-junk"), 400, "invalid_batch_file")
    assert fake.calls["POST /v1/batches"] == 0
    assert batch(key, "file-mine").status_code == 200
    assert batch(anyone, "file-other").status_code == 200  # allowed every model: not read
    assert fake.calls["GET /v1/files/file-other/content"] == 1


def test_the_model_of_a_multipart_form_is_checked_wherever_it_is(start, fake):
    gw = start()
    _, key = new_key(gw, models=["whisper-1"])
    for fields in (
        [("model", b"gpt-4o-transcribe", None), ("file", AUDIO, "a.wav")],
        [("file", AUDIO, "a.wav"), ("model", b"gpt-4o-transcribe", None)],  # after the file
    ):
        reply = call(gw, key, "POST", "/audio/transcriptions", content=multipart(fields),
                     headers=FORM)
        refused(reply, 403, "model_not_allowed")
    # Two model fields: the upstream might read either one.
    two = multipart([("model", b"whisper-1", None), ("file", AUDIO, "a.wav"),
                     ("model", b"gpt-4o-transcribe", None)])
    refused(call(gw, key, "POST", "/audio/transcriptions", content=two, headers=FORM),
            400, "invalid_multipart")
    # A part the gateway cannot name is refused rather than relayed unchecked.
    hidden = (b"--lgwtest\r\nContent-Disposition: form-data; name*=utf-8''model\r\n\r\n"
              b"gpt-4o-transcribe\r\n--lgwtest--\r\n")
    refused(call(gw, key, "POST", "/audio/transcriptions", content=hidden, headers=FORM),
            400, "invalid_multipart")
    assert fake.calls["POST /v1/audio/transcriptions"] == 0

    # Allowed: through the SDK's own encoding (httpx), the file arrives whole.
    reply = call(gw, key, "POST", "/audio/transcriptions", data={"model": "whisper-1"},
                 files={"file": ("a.wav", AUDIO, "audio/wav")})
    assert reply.status_code == 200, reply.text
    assert reply.json()["text"] == f"{len(AUDIO)} bytes heard by whisper-1"


def upload(gw: GatewayServer, key: str) -> httpx.Response:
    return call(gw, key, "POST", "/files", data={"purpose": "batch"},
                files={"file": ("in.jsonl", b"{}\n", "application/jsonl")})


def test_a_rate_limited_key_gets_429_on_the_passthrough(start, fake):
    gw = start()
    _, key = new_key(gw, limits={"rpm": 2})
    first = upload(gw, key)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    # The model endpoints and the passthrough count against the same limit.
    chat = call(gw, key, "POST", "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200
    reply = upload(gw, key)
    refused(reply, 429, "rate_limit_exceeded")
    assert "retry-after" in reply.headers
    assert fake.calls["POST /v1/files"] == 1


def test_endpoint_families_are_allowed_per_gateway_team_and_key(start, fake):
    gw = start(teams={"research": {"models": ["gpt-4o-mini"], "endpoints": ["audio"]}})
    admin = Admin(gw)

    # The gateway's own list (the default leaves out realtime, OpenAI's admin API, models).
    _, anyone = new_key(gw)
    assert call(gw, anyone, "POST", "/moderations", json={"input": "hi"}).status_code == 200
    for path in ("/realtime/sessions", "/organization/users", "/unheard_of/x"):
        error = refused(call(gw, anyone, "POST", path, json={}), 403, "endpoint_not_allowed")
        assert "routing.passthrough_endpoints" in error["message"]

    # A key narrowed to files; a key cannot widen what the gateway allows.
    key_id, files_only = new_key(gw, endpoints=["files", "realtime"])
    uploaded = upload(gw, files_only)
    assert uploaded.status_code == 200
    batch = {**BATCH, "input_file_id": uploaded.json()["id"]}  # the key's own file
    error = refused(call(gw, files_only, "POST", "/batches", json=BATCH), 403,
                    "endpoint_not_allowed")
    assert "'batches'" in error["message"] and "key" in error["message"]
    refused(call(gw, files_only, "POST", "/realtime/sessions", json={}), 403,
            "endpoint_not_allowed")
    # Changed through the admin API: applies at once; the key's JSON says it.
    changed = admin("PATCH", f"/admin/keys/{key_id}", json={"endpoints": ["batches"]})
    assert changed.status_code == 200 and changed.json()["endpoints"] == ["batches"]
    assert call(gw, files_only, "POST", "/batches", json=batch).status_code == 200
    refused(upload(gw, files_only), 403, "endpoint_not_allowed")
    bad = admin("PATCH", f"/admin/keys/{key_id}", json={"endpoints": ["Files!"]})
    assert bad.status_code == 400

    # A config team (audio only), and a team made through the admin API (images only).
    _, researcher = new_key(gw, team="research")
    refused(upload(gw, researcher), 403, "endpoint_not_allowed")
    assert call(gw, researcher, "POST", "/audio/speech",
                json={"input": "hi", "voice": "alloy"}).status_code == 200
    made = admin("POST", "/admin/teams", json={"name": "art", "endpoints": ["images"]})
    assert made.status_code == 201 and made.json()["endpoints"] == ["images"]
    _, artist = new_key(gw, team="art")
    error = refused(upload(gw, artist), 403, "endpoint_not_allowed")
    assert "team 'art'" in error["message"]
    assert call(gw, artist, "POST", "/images/generations",
                json={"prompt": "a cat"}).status_code == 200
    assert fake.calls["POST /v1/files"] == 1  # only the allowed call got through


def test_a_model_naming_a_route_goes_to_its_upstream_under_its_upstream_name(start, fake):
    with FakeUpstream() as second:
        gw = start(
            upstreams={
                "openai": {"base_url": fake.url, "api_key_env": "LGW_TEST_UPSTREAM_KEY"},
                "second": {"base_url": second.url},
            },
            local={"box": {"model": "default", "urls": ["http://127.0.0.1:9"]}},
            models=[
                {"name": "house-model", "backend": "openai", "upstream_model": "gpt-4o"},
                {"name": "acme-image", "backend": "second", "upstream_model": "gpt-image-1"},
                {"name": "acme-whisper", "backend": "second", "upstream_model": "whisper-1"},
                {"name": "local-llm", "backend": "box"},
            ],
        )
        _, key = new_key(gw)
        reply = call(gw, key, "POST", "/images/generations",
                     json={"model": "house-model", "prompt": "a cat"})
        assert reply.status_code == 200, reply.text
        assert fake.requests[-1].json["model"] == "gpt-4o"  # renamed on the way up

        reply = call(gw, key, "POST", "/images/generations",
                     json={"model": "acme-image", "prompt": "a cat", "n": 1})
        assert reply.status_code == 200 and reply.headers["x-lgw-backend"] == "second"
        assert second.requests[-1].json == {"model": "gpt-image-1", "prompt": "a cat", "n": 1}
        assert "usage" in reply.json()  # the fake's gpt-image answer: it saw gpt-image-1

        reply = call(gw, key, "POST", "/audio/transcriptions",
                     content=multipart([("file", AUDIO, "a.wav"),
                                        ("model", b"acme-whisper", None)]), headers=FORM)
        assert reply.status_code == 200, reply.text
        assert reply.json()["text"] == f"{len(AUDIO)} bytes heard by whisper-1"
        sent = second.requests[-1]
        assert int(sent.headers["content-length"]) == len(sent.body)
        assert AUDIO in sent.body and b'name="model"\r\n\r\nwhisper-1\r\n' in sent.body

        # A model no route names goes to the passthrough upstream as it is.
        reply = call(gw, key, "POST", "/images/generations",
                     json={"model": "dall-e-3", "prompt": "a cat"})
        assert reply.status_code == 200 and fake.requests[-1].json["model"] == "dall-e-3"
        # Local workers serve only the model endpoints.
        error = refused(call(gw, key, "POST", "/images/generations",
                             json={"model": "local-llm", "prompt": "a cat"}),
                        400, "model_not_supported")
        assert "local backend" in error["message"]


def test_passthrough_backend_off_answers_404(start, fake):
    # Unquoted, as people write it: YAML reads `off` as false.
    routing = yaml.safe_load("passthrough_backend: off")
    gw = start(routing=routing)
    _, key = new_key(gw)
    for method, path in (("GET", "/files"), ("POST", "/images/generations"),
                         ("DELETE", "/vector_stores/vs_1")):
        error = refused(call(gw, key, method, path, json={}), 404, "passthrough_off")
        assert "turned off (routing.passthrough_backend: off)" in error["message"]
    assert sum(fake.calls.values()) == 0
    chat = call(gw, key, "POST", "/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200  # the model endpoints still work
