"""`--tracing`: an OTLP/HTTP receiver for the gateway's spans, on the load core beside nginx
and wrk (its own process: decoding spans is a collector's work, not the gateway's)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import common  # bench/common.py
from nginx import pinned
from settings import LOAD_CORE


class Receiver:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def stats(self) -> dict[str, int]:
        """{"exports": ..., "spans": ...} received so far."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.load(r)


def start_receiver(tmp: Path, pin: bool) -> Receiver:
    port = common.free_port()
    log = tmp / "otlp-receiver.log"
    cmd = pinned(LOAD_CORE, [sys.executable, "-m", "llm_gateway.testing.otlp_receiver",
                             "--port", str(port)], pin)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    receiver = Receiver(proc, port, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            receiver.stats()
            return receiver
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                common.stop(proc, grace=5)
                raise RuntimeError(f"OTLP receiver not answering:\n{common.tail(log)}") \
                    from None
            time.sleep(0.1)
