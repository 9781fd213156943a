"""Helpers of the Anthropic provider tests: the gateway's config, its env and its ledger."""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_gateway.accounting.record import TABLE
from llm_gateway.testing.gateway import GatewayServer

from gateway_support import ENV

ANTHROPIC_KEY = "sk-ant-test-secret"
DEFAULT_MAX_TOKENS = 64
UPSTREAM_MODEL = "claude-sonnet-4-5-20250929"


@dataclass
class Served:
    gateway: GatewayServer
    ledger: Path  # the gateway's database, holding the usage ledger


def anthropic_env() -> dict[str, str]:
    # The ledger goes to the config's data_dir, not the session's shared one.
    env = {k: v for k, v in ENV.items() if k != "LLM_GATEWAY__STORAGE__DATA_DIR"}
    return {**env, "LGW_TEST_ANTHROPIC_KEY": ANTHROPIC_KEY}


def anthropic_config(url: str, data_dir: Path) -> dict[str, Any]:
    return {
        "upstreams": {"anthropic": {
            "kind": "anthropic", "base_url": url, "api_key_env": "LGW_TEST_ANTHROPIC_KEY",
            "default_max_tokens": DEFAULT_MAX_TOKENS,
            "timeouts": {"connect": 2, "read": 5, "total": 10},
            "retries": {"attempts": 1, "backoff_seconds": 0.01},
        }},
        "models": [
            {"name": "claude", "backend": "anthropic", "upstream_model": UPSTREAM_MODEL},
            {"name": "claude-*", "backend": "anthropic"},
        ],
        "storage": {"data_dir": str(data_dir)},
        "accounting": {"flush_seconds": 0.05},
    }


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def ledger_record(db: Path, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The ledger's row for a request, once the accounting writer has flushed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                found = conn.execute(f"SELECT * FROM {TABLE} WHERE request_id = ?",
                                     (request_id,)).fetchone()
            if found is not None:
                return dict(found)
        time.sleep(0.05)
    raise AssertionError(f"the ledger has no record of {request_id}")
