"""The fake's echo of any other ``/v1`` path: streamed uploads and sized downloads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx

from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.fake_responses import download_bytes

# --- passthrough echo -------------------------------------------------------------------------


def test_echo_streamed_upload(fake: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(3 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    r = http.post(
        "/files?purpose=batch",
        content=pieces(),
        headers={"content-type": "application/octet-stream"},
    )
    assert r.json() == {
        "object": "echo",
        "method": "POST",
        "path": "/v1/files",
        "query": "purpose=batch",
        "content_type": "application/octet-stream",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    recorded = fake.requests[-1]
    assert (recorded.body, recorded.json, recorded.query) == (b"", None, "purpose=batch")

    small = http.put("/batches/b1", json={"k": 1})
    assert small.json()["method"] == "PUT" and small.json()["bytes"] == len(b'{"k":1}')
    assert fake.requests[-1].json == {"k": 1}


def test_echo_download(http: httpx.Client) -> None:
    size = 200_000
    r = http.get("/files/file-1/content", params={"size": size})
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == download_bytes(size)
    assert len(r.content) == size and r.content[251] == 0 and r.content[252] == 1
