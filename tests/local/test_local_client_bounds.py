"""Spawned workers get the gateway's client bounds (`server.max_body_bytes`, the head and body
timeouts, the body's least rate): a worker's port is reached without the gateway too (a pod
IP, a neighbour on the host), so it refuses what the gateway would refuse."""

from __future__ import annotations

import httpx
import orjson

from llm_gateway.config import parse_config
from llm_gateway.testing import FakeUpstream
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV
from local_support import LocalGateway, config_with_local
from slow_client_support import assert_408, connect, until_closed

MAX_BODY = 4096
LIMIT = 1.0
SLACK = 4.0


def test_spawned_workers_refuse_what_the_gateway_refuses(fake: FakeUpstream) -> None:
    data = config_with_local(fake.url, {"smol": {}})
    data["server"] = {"max_body_bytes": MAX_BODY, "header_timeout_seconds": LIMIT,
                      "body_timeout_seconds": LIMIT}
    gateway = LocalGateway(GatewayServer(parse_config(data, env=ENV), env=ENV).start())
    try:
        gateway.wait_ready("smol")
        (worker,) = gateway.backend("smol").pool.workers
        big = orjson.dumps({"model": "smol", "prompt": "a" * MAX_BODY, "max_tokens": 1})
        direct = httpx.post(f"{worker.url}/v1/completions", content=big, timeout=60)
        assert direct.status_code == 413, direct.text
        assert str(MAX_BODY) in direct.json()["error"]["message"]
        port = int(worker.url.rsplit(":", 1)[1])
        head = b"POST /v1/completions HTTP/1.1\r\nHost: w\r\n"  # never finished
        assert_408(until_closed(connect(port, head), LIMIT + SLACK))
    finally:
        gateway.stop()
