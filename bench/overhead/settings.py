"""Constants shared by the overhead benchmark's modules: scenarios, cores, targets."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
API_KEY_ENV = "BENCH_UPSTREAM_KEY"
API_KEY = "sk-bench"
CONTENT_CHUNKS = 20
CONNECTIONS = (1, 32)
SCENARIOS = ("non-stream", "stream")
MODEL = {"non-stream": "bench-json", "stream": "bench-sse"}
GATEWAY_CORE = "0"
LOAD_CORE = "1"  # nginx and wrk

# Targets on one gateway core.
TARGET_RPS = {"non-stream": 1000.0, "stream": 800.0}  # at 32 connections
TARGET_ADDED_P50_MS = 1.0  # at 1 connection
TARGET_RSS_MIB = 150.0
METRICS_MAX_COST = 0.05  # metrics on may cost at most 5% of the throughput with them off
DEPLOYMENTS_MAX_COST = 0.10  # two balanced deployments: within 10% of one backend (issue 15)
ACCOUNTING_MAX_COST = 0.15  # keys + usage ledger: at most 15% of the throughput without
TRACING_MAX_COST = 0.15  # every request traced and exported: >= 85% of off's (issue 19)

CREATED = 1_700_000_000
