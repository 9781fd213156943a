"""Following DNS discovery: the pool's workers become the addresses the answers name
(see discovery.py); each is health-checked like a worker given as a URL."""

from __future__ import annotations

import asyncio
import logging

from llm_gateway.backends.pool import WorkerPool
from llm_gateway.backends.worker_health import HealthChecks
from llm_gateway.config import LocalConfig

# The supervisor's logger, as before the split: log filters and configs name it.
log = logging.getLogger("llm_gateway.backends.supervisor")


class DiscoveredWorkers(HealthChecks):
    """The Supervisor's discovered workers (a mixin: the Supervisor holds the state)."""

    cfg: LocalConfig
    pool: WorkerPool
    _watchers: dict[int, asyncio.Task]
    _closing: bool

    def _follow(self, urls: set[str]) -> None:
        """Make the discovered ``urls`` the pool's workers: watch new ones, drop vanished ones."""
        if self._closing:
            return
        known = {w.url: w for w in self.pool.workers}
        for url in sorted(urls - known.keys()):
            worker = self.pool.add(url)
            task = asyncio.get_running_loop().create_task(self._watch_external(worker))
            self._watchers[worker.index] = task
            log.info("local %s: worker %d discovered at %s", self.cfg.name, worker.index, url)
        for url in known.keys() - urls:
            worker = known[url]
            if (watcher := self._watchers.pop(worker.index, None)) is not None:
                watcher.cancel()
            self.pool.remove(worker)
            log.info("local %s: worker %d at %s left (%d requests in flight finish there)",
                     self.cfg.name, worker.index, url, worker.outstanding)
