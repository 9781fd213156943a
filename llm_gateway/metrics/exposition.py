"""GET /metrics: the Prometheus text format, from this process or from all of uvicorn's.

With several worker processes (`server.workers` > 1) each keeps its metrics in files under
``PROMETHEUS_MULTIPROC_DIR`` and a scrape, which reaches one process, sums them all
(prometheus_client's multiprocess mode). prometheus_client picks that mode when it is first
imported, so `llm-gateway serve` sets the variable before starting the processes, which
inherit it; `prepare_multiprocess_dir` makes the directory and empties it of an earlier
run's files.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, values
from prometheus_client import multiprocess as mp

from llm_gateway.metrics.registry import GatewayMetrics

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_active() -> bool:
    """Whether metric values of this process live in the shared directory."""
    return values.ValueClass is not values.MutexValue


class Exposition:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._dir = os.environ.get(MULTIPROC_ENV)
        if self._dir and multiprocess_active():
            self.registry = CollectorRegistry(auto_describe=False)
            mp.MultiProcessCollector(self.registry, path=self._dir)
        else:
            if self._dir:
                log.warning("%s is set but prometheus_client was imported before it was: "
                            "/metrics shows this process only", MULTIPROC_ENV)
            self._dir = None
            self.registry = metrics.registry

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        """This process is going: drop its live gauges (in flight, queue depth) from the sums."""
        if self._dir:
            mp.mark_process_dead(os.getpid(), self._dir)


def prepare_multiprocess_dir(path: str | None) -> tuple[str, bool]:
    """The directory to share (``path``, or a new temporary one), emptied of old metric files.

    Returns it and whether it was created here (then the caller removes it at exit).
    """
    if path is None:
        return tempfile.mkdtemp(prefix="llm-gateway-metrics-"), True
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):  # only prometheus_client's files: the rest is not ours
        old.unlink(missing_ok=True)
    return str(folder), False


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
