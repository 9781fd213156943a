"""The set of workers behind one local backend, and which one a request goes to.

The balancing rule, in order:

1. Candidates are the healthy workers this request has not already found full.
2. Without an affinity key (affinity off, or nothing to key on): the candidate with the fewest
   outstanding requests (requests this gateway has sent it that have not finished); ties go
   round-robin.
3. With a key (a digest of the conversation's start, see `local.affinity_key`): the candidate
   that rendezvous hashing picks for that key, so one conversation keeps hitting the worker
   whose llama.cpp context already holds its prefix, and a worker coming or going only moves
   the conversations that hashed to it. The preferred worker is passed over only when it is
   much busier, i.e. has at least ``AFFINITY_SLACK`` more outstanding requests than the
   least-loaded candidate: then the request goes to the least-loaded one, since re-reading a
   prompt costs less than waiting behind that many generations.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# How many more requests than the least-loaded worker the affinity worker may have in flight
# before a request leaves it. Small: one generation ahead is worth waiting for (its prefix is
# cached), several are not.
AFFINITY_SLACK = 2


@dataclass(eq=False)
class Worker:
    """One worker as the gateway sees it. Mutated only on the event loop."""

    index: int
    url: str = ""  # http://host:port, without /v1
    healthy: bool = False
    status: str = "starting"  # starting | ok | down | error, for logs and tests
    outstanding: int = 0
    pid: int | None = None  # spawned workers only
    restarts: int = 0  # times the supervisor started it again after it died
    generation: int = 0  # bumped at each (re)start: connections to an older one are stale
    client: Any = None  # the HTTP client for `url` (an UpstreamBackend), set by the owner
    check_now: asyncio.Event = field(default_factory=asyncio.Event)  # asks for a health check


def _score(key: bytes, worker: Worker) -> bytes:
    # The worker's index, not its URL: a spawned worker may come back on another port.
    return hashlib.blake2b(key + worker.index.to_bytes(4, "little"), digest_size=8).digest()


def choose(
    workers: Iterable[Worker], key: bytes | None, *, slack: int = AFFINITY_SLACK, turn: int = 0
) -> Worker | None:
    """Pick a worker by the rule in the module docstring; None when there is no candidate."""
    candidates = list(workers)
    if not candidates:
        return None
    least = min(w.outstanding for w in candidates)
    if key is not None:
        preferred = max(candidates, key=lambda w: _score(key, w))
        if preferred.outstanding - least < slack:
            return preferred
    idle = [w for w in candidates if w.outstanding == least]
    return idle[turn % len(idle)]


class WorkerPool:
    def __init__(self, name: str, size: int, *, affinity: bool = True) -> None:
        self.name = name
        self.workers = [Worker(index=i) for i in range(size)]
        self.affinity = affinity
        self._turn = 0
        self._changed = asyncio.Event()
        self._next_index = size  # indexes are never reused: they key affinity and clients
        self.on_release: Callable[[], None] | None = None  # residency: the model may be idle

    def pick(self, key: bytes | None, skip: set[int]) -> Worker | None:
        """The worker for a request (not yet counted as outstanding), or None."""
        self._turn += 1
        candidates = (w for w in self.workers if w.healthy and w.index not in skip)
        return choose(candidates, key if self.affinity else None, turn=self._turn)

    def add(self, url: str) -> Worker:
        """A worker found at ``url`` (discovery); it gets requests once a health check passes."""
        worker = Worker(index=self._next_index, url=url)
        self._next_index += 1
        self.workers.append(worker)
        return worker

    def remove(self, worker: Worker) -> None:
        """Forget a worker that is gone (discovery); the requests already on it finish there."""
        self.workers.remove(worker)
        self.set_health(worker, False, "gone")

    def acquire(self, worker: Worker) -> None:
        worker.outstanding += 1

    def release(self, worker: Worker) -> None:
        worker.outstanding = max(0, worker.outstanding - 1)
        if self.on_release is not None:
            self.on_release()

    def any_healthy(self) -> bool:
        return any(w.healthy for w in self.workers)

    def set_health(self, worker: Worker, healthy: bool, status: str) -> None:
        changed = worker.healthy != healthy
        worker.healthy, worker.status = healthy, status
        if changed:
            # Wake everyone waiting for a healthy worker; they re-check and wait again if need be.
            self._changed.set()
            self._changed = asyncio.Event()

    def report_unreachable(self, worker: Worker) -> None:
        """A request could not reach the worker: stop sending it more until it checks out."""
        self.set_health(worker, False, "down")
        worker.check_now.set()

    async def wait_for_change(self, timeout: float) -> None:
        """Return when some worker's health changes, or after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass
