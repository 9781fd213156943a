"""A probe on a running gateway: its accountant asks for usage and meters with our functions,
and every Metered lands here by request id (the ledger's own tests check the records)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import orjson

from llm_gateway.accounting.metering import Metered, ask_for_usage, meter
from llm_gateway.accounting.record import TABLE
from llm_gateway.call import Call
from llm_gateway.testing.gateway import GatewayServer


class MeterProbe:
    def __init__(self, server: GatewayServer) -> None:
        state = server.app.state
        self._done: dict[str, list[Metered]] = {}
        self._calls: dict[str, list[Call]] = {}
        self._cond = threading.Condition()
        accountant = state.accountant

        def track(call, admission, result, started, also=None):
            admission.settle(0, 0.0)
            with self._cond:
                self._calls.setdefault(call.request_id, []).append(call)

            def done(m: Metered) -> None:
                if also is not None:
                    also(m)
                self._record(call.request_id, m)

            return meter(call, result, state.backends, done)

        accountant.prepare = ask_for_usage
        accountant.track = track

    def _record(self, request_id: str, metered: Metered) -> None:
        with self._cond:
            self._done.setdefault(request_id, []).append(metered)
            self._cond.notify_all()

    def call(self, request_id: str) -> Call:
        """The one metered Call of a request."""
        with self._cond:
            (call,) = self._calls[request_id]
        return call

    def all_metered(self, request_id: str, count: int, timeout: float = 30.0) -> list[Metered]:
        """The ``count`` Metered of calls that shared one request id, once they are over."""
        with self._cond:
            assert self._cond.wait_for(
                lambda: len(self._done.get(request_id, ())) >= count, timeout), \
                f"fewer than {count} usages recorded for {request_id}"
            return list(self._done[request_id])

    def metered(self, request_id: str, timeout: float = 15.0) -> Metered:
        """The one Metered of a request, once it is over (fails if it comes twice)."""
        with self._cond:
            assert self._cond.wait_for(lambda: request_id in self._done, timeout), \
                f"no usage recorded for {request_id}"
        with self._cond:  # give a second (wrong) report a moment to show up
            self._cond.wait_for(lambda: len(self._done[request_id]) > 1, 0.2)
            reports = self._done[request_id]
        assert len(reports) == 1, reports
        return reports[0]


def sse_events(base_url: str, path: str, body: dict, request_id: str) -> list[bytes]:
    """The raw data payloads of a streamed answer, read with httpx (no SDK in between)."""
    with httpx.stream("POST", base_url + path, json=body, timeout=30,
                      headers={"x-request-id": request_id,
                               "authorization": "Bearer sk-client"}) as response:
        assert response.status_code == 200, response.read()
        return [line[5:].strip().encode() for line in response.iter_lines()
                if line.startswith("data:")]


def chunks_without_choices(events: list[bytes]) -> list[dict]:
    found = []
    for data in events:
        if data == b"[DONE]":
            continue
        obj = orjson.loads(data)
        if not obj.get("choices"):
            found.append(obj)
    return found


def ledger_row(db: Path, request_id: str, timeout: float = 15.0) -> dict:
    """The ledger's record of a request, once the writer has flushed it."""
    deadline = time.monotonic() + timeout
    while True:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                rows = [dict(r) for r in conn.execute(
                    f"SELECT * FROM {TABLE} WHERE request_id = ?", (request_id,))]
            if rows:
                assert len(rows) == 1, rows
                return rows[0]
        assert time.monotonic() < deadline, f"no ledger record for {request_id}"
        time.sleep(0.05)
