"""Every other /v1 path relays to the default upstream, bodies streamed both ways."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest

from gateway_support import UPSTREAM_KEY


def test_file_upload_via_sdk(client, fake):
    payload = bytes(range(256)) * (3 * 4096)  # 3 MiB
    answer = client.files.with_raw_response.create(
        file=("data.jsonl", io.BytesIO(payload)), purpose="batch"
    )
    echo = answer.http_response.json()
    assert echo["object"] == "echo" and echo["path"] == "/v1/files"
    assert echo["content_type"].startswith("multipart/form-data")
    assert echo["bytes"] > len(payload)  # multipart framing around the file
    assert fake.calls["POST /v1/files"] == 1


def test_streamed_upload_is_relayed_exactly(gateway, fake):
    chunks = [bytes([i]) * 65536 for i in range(40)]  # 2.5 MiB, no Content-Length
    r = httpx.post(gateway.url + "/uploads/upload_1/parts?lang=en", content=iter(chunks),
                   headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200
    echo = r.json()
    assert echo["bytes"] == sum(len(c) for c in chunks)
    assert echo["sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert echo["query"] == "lang=en"
    assert echo["method"] == "POST"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_download_streams_back(gateway):
    with httpx.stream("GET", gateway.url + "/files/file-abc/content?size=1000000") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        data = r.read()
    assert len(data) == 1_000_000


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "PUT"])
def test_any_method_any_path(gateway, fake, method):
    r = httpx.request(method, gateway.url + "/vector_stores/vs_1/files?limit=2")
    assert r.status_code == 200
    assert r.json()["method"] == method
    assert r.json()["path"] == "/v1/vector_stores/vs_1/files"
    assert r.headers["x-lgw-backend"] == "openai"


def test_passthrough_errors_keep_status_and_body(gateway, fake):
    fake.fail_next(404, message="No such batch")
    r = httpx.get(gateway.url + "/batches/batch_x")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "No such batch"


def test_upload_over_limit_is_413(gateway, fake):
    big = b"z" * (16 * 1024 * 1024 + 1)
    r = httpx.post(gateway.url + "/files", content=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert fake.calls["POST /v1/files"] == 0
