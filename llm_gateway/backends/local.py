"""A local backend: a pool of llama.cpp workers (`llm-gateway worker`), spawned or external.

Each worker speaks OpenAI's wire format, so talking to one is exactly talking to an upstream:
every worker gets its own `UpstreamBackend` (no key, no retries of its own) and this module
only decides where a call goes and what to do when a worker is full or gone:

- the worker is picked by `pool.choose` (least outstanding requests, prefix affinity);
- a worker that cannot be reached before the response starts (connect error, connection
  reset) is reported to the supervisor and the call is tried again on another healthy worker,
  or on the same one once it is back, within the call's deadline;
- a worker that answers 429 ``queue_full`` is skipped for this call; when every healthy worker
  is full, the call spills to ``fallback`` (`BackendSaturated`, caught by the `SpillOver`
  wrapper the router puts around this backend: spill.py) or the last 429 is answered as is;
- once a stream has begun, a worker that dies ends it with an SSE error event (the upstream
  relay's behaviour).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NoReturn

import orjson

from llm_gateway.backends.base import Backend
from llm_gateway.backends.discovery import Resolver
from llm_gateway.backends.http_upstream import MAX_ANSWER_BYTES
from llm_gateway.backends.local_managed import ManagedWorkers
from llm_gateway.backends.pool import Worker, WorkerPool
from llm_gateway.backends.residency import NoRoom, Residency
from llm_gateway.backends.sse import MAX_EVENT_BYTES
from llm_gateway.backends.supervisor import Supervisor
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.call import Call, Result
from llm_gateway.config import LocalConfig, RetryConfig, UpstreamConfig
from llm_gateway.errors import InvalidRequest, ServiceUnavailable, UpstreamUnavailable
from llm_gateway.stream.observer import End, Observer, Stage
from llm_gateway.usage import Usage

log = logging.getLogger(__name__)

ENDPOINTS = frozenset({"/chat/completions", "/completions", "/embeddings"})
PROMPT_PREFIX_CHARS = 512  # how much of a completions prompt keys affinity
SERVED_MEMORY = 8192  # streams whose worker is remembered, to ask it what they used
USAGE_WAIT_SECONDS = 2.0  # how long a worker may take to settle a cut stream's counts


class BackendSaturated(Exception):  # a signal to SpillOver (spill.py), never seen above it
    """Every healthy worker's queue is full and a fallback model is configured.

    `SpillOver` re-routes the call to ``fallback``; if it cannot, it answers ``result``
    (the workers' own 429).
    """

    def __init__(self, backend: str, fallback: str, result: Result) -> None:
        super().__init__(f"local backend '{backend}' is saturated; spilling to '{fallback}'")
        self.backend = backend
        self.fallback = fallback
        self.result = result


def affinity_key(call: Call) -> bytes | None:
    """A digest of the start of the conversation, shared by all of its turns; None: no key.

    Chat: the messages up to and including the first user message (the system prompt and the
    opening question), which every later turn repeats. Completions: the prompt's first
    ``PROMPT_PREFIX_CHARS`` characters.
    """
    body = call.body
    if call.endpoint == "/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        end = next(
            (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
            len(messages) - 1,
        )
        prefix = orjson.dumps(messages[: end + 1])
    elif call.endpoint == "/completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            prompt = prompt[0]  # a batch of prompts: key on the first
        if isinstance(prompt, str) and prompt:
            prefix = prompt[:PROMPT_PREFIX_CHARS].encode()
        elif isinstance(prompt, list) and prompt:  # token ids
            prefix = orjson.dumps(prompt[:PROMPT_PREFIX_CHARS])
        else:
            return None
    else:
        return None
    model = (call.target_model or call.model).encode()
    return hashlib.blake2b(model + b"\0" + prefix, digest_size=16).digest()


def _queue_full(result: Result) -> bool:
    return result.status == 429 and b"queue_full" in result.body


class LocalBackend(ManagedWorkers, Backend):
    local = True

    def __init__(
        self, cfg: LocalConfig, *, clock: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None, max_event_bytes: int = MAX_EVENT_BYTES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        residency: Residency | None = None, worker_args: tuple[str, ...] = (),
    ) -> None:
        self.name = cfg.name
        self._worker_args = worker_args  # more flags for spawned workers (tracing's)
        self._max_event_bytes = max_event_bytes
        self._max_answer_bytes = max_answer_bytes
        self.cfg = cfg
        self.fallback = cfg.fallback
        self.pool = WorkerPool(cfg.name, cfg.worker_count, affinity=cfg.affinity)
        self.supervisor = Supervisor(cfg, self.pool, clock=clock, resolver=resolver,
                                     extra_args=worker_args)
        self._clock = clock
        self._resolver = resolver
        self._join(residency)  # spawned workers: started and stopped by residency
        # worker index -> ((url, generation), its client, the worker)
        self._clients: dict[int, tuple[tuple[str, int], UpstreamBackend, Worker]] = {}
        # call id -> the worker that streamed it, its generation then, and the request id the
        # worker logged it under (bounded LRU)
        self._served: OrderedDict[str, tuple[Worker, int, str]] = OrderedDict()
        self._created = int(time.time())

    @property
    def _max_attempts(self) -> int:
        # Every worker tried once or twice over, at most: a worker that keeps resetting
        # connections must not keep a call going round. (Discovery changes the count.)
        return 2 * len(self.pool.workers) + 1

    async def start(self) -> None:
        if self.residency is not None:
            await self.residency.start_model(self.name)
        else:
            await self.supervisor.start()

    # -- the Backend seam ------------------------------------------------------------------
    async def complete(self, call: Call) -> Result:
        if call.endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"The model '{call.model}' is served by a local worker, which does not "
                f"support {call.endpoint}.", param="model", code="unsupported_endpoint",
            )
        if call.endpoint == "/embeddings" and not self.cfg.embeddings:
            raise InvalidRequest(
                f"The model '{call.model}' serves no embeddings: its local backend "
                f"'{self.name}' is configured with embeddings: false.", param="model",
                code="embeddings_unsupported",
            )
        if not self._on_demand:
            if self.residency is not None:
                self.residency.note_use(self._slot)
            return await self._complete(call)
        assert self.residency is not None
        try:
            async with self.residency.serving(self.name):  # loads the model if need be
                return await self._complete(call)
        except NoRoom as exc:
            self._no_room(exc)

    async def _complete(self, call: Call) -> Result:
        key = affinity_key(call) if self.cfg.affinity else None
        now = self._clock()
        total = self.cfg.timeouts.total
        # How long a call waits for a worker to be (back) up: the startup allowance, at most.
        wait_until = now + min(self.cfg.startup_timeout_seconds, total or float("inf"))
        full: set[int] = set()
        last_full: Result | None = None
        unreachable = 0
        sent = replace(call, request_id=worker_request_id(call))  # keys the worker's usage log
        while True:
            worker = self.pool.pick(key, full)
            if worker is None:
                if last_full is not None:
                    return self._saturated(last_full)
                left = wait_until - self._clock()
                if left <= 0:
                    raise ServiceUnavailable(
                        f"local backend '{self.name}' has no worker ready", headers={
                            "retry-after": str(int(self.cfg.restart_backoff_seconds) + 1)},
                    )
                await self.pool.wait_for_change(left)
                continue
            client = await self._client(worker)
            self.pool.acquire(worker)
            try:
                result = await client.complete(sent)
            except UpstreamUnavailable as exc:
                self.pool.release(worker)
                self.pool.report_unreachable(worker)
                unreachable += 1
                log.warning("local %s: worker %d unreachable (%s); trying again", self.name,
                            worker.index, exc.message)
                if unreachable >= self._max_attempts:
                    raise UpstreamUnavailable(
                        f"local backend '{self.name}': no worker could be reached"
                    ) from None
                continue
            except BaseException:
                self.pool.release(worker)
                raise
            if _queue_full(result):
                self.pool.release(worker)
                full.add(worker.index)
                last_full = result
                continue
            if result.stream is not None:
                self._remember(sent, worker)
            return self._tracked(result, worker)

    async def list_models(self) -> list[dict[str, Any]]:
        return [{"id": self.name, "object": "model", "created": self._created,
                 "owned_by": "local"}]

    async def usage_of(self, call_id: str) -> Usage | None:
        """What the worker that streamed the call ``call_id`` counted for it, cut short or not.

        None when that is unknown: no stream by that call, or its worker restarted since (its
        log went with it), or the worker could not be asked.
        """
        served = self._served.get(call_id)
        if served is None or served[0].generation != served[1] or not served[0].url:
            return None
        worker, _, request_id = served
        client = await self._client(worker)
        result: Result | None = None
        try:
            async with asyncio.timeout(USAGE_WAIT_SECONDS + 5):
                result = await client.forward(
                    "GET", f"/internal/usage/{request_id}", f"wait={USAGE_WAIT_SECONDS}", {},
                    request_id, None)
                stream = result.stream
                body = b"".join([b async for b in stream]) if stream is not None else b""
        except Exception as exc:  # accounting falls back to counting tokens itself
            log.warning("local %s: could not ask a worker what %s used: %r", self.name,
                        request_id, exc)
            return None
        finally:
            if result is not None:
                await result.aclose()
        if result.status != 200:
            return None
        try:
            used = orjson.loads(body)
            prompt, completion = int(used["prompt_tokens"]), int(used["completion_tokens"])
            cached = int(used.get("cached_tokens") or 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return Usage(prompt, completion, cached, prompt + completion)

    def problem(self) -> str | None:
        if self.pool.any_healthy() or self._unloaded_on_demand():
            return None
        states = ", ".join(w.status for w in self.pool.workers)
        return f"local backend '{self.name}' has no healthy worker ({states})"

    async def aclose(self) -> None:
        await self.supervisor.aclose()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for _, client, _ in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _no_room(self, exc: NoRoom) -> NoReturn:
        """The model does not fit now: its fallback answers (SpillOver), else a 503."""
        error = ServiceUnavailable(exc.message, code="model_does_not_fit",
                                   headers={"retry-after": str(exc.retry_after)})
        result = Result(error.status, list(error.headers.items()), error.body_bytes())
        result.backend = self.name
        if self.cfg.fallback is not None:
            raise BackendSaturated(self.name, self.cfg.fallback, result)
        raise error

    # -- internals ---------------------------------------------------------------------------
    async def _client(self, worker: Worker) -> UpstreamBackend:
        """The worker's HTTP client; a new one when the worker was restarted."""
        version = (worker.url, worker.generation)
        entry = self._clients.get(worker.index)
        if entry is not None and entry[0] == version:
            return entry[1]
        if entry is not None:
            await entry[1].aclose()  # its connections went to a process that is gone
        await self._close_departed()
        cfg = UpstreamConfig(
            base_url=worker.url + "/v1",
            max_connections=64,
            timeouts=self.cfg.timeouts,
            retries=RetryConfig(attempts=0),  # retrying is this module's job: elsewhere
            request_id_header="x-request-id",  # our own worker keys its usage log on it
            list_models=False,
            proxy="none",  # our own workers, on this machine or in the cluster
            name=f"{self.name}#{worker.index}",
        )
        client = UpstreamBackend(cfg, {}, max_event_bytes=self._max_event_bytes,
                                 max_answer_bytes=self._max_answer_bytes)
        self._clients[worker.index] = (version, client, worker)
        return client

    def _remember(self, sent: Call, worker: Worker) -> None:
        self._served[sent.call_id] = (worker, worker.generation, sent.request_id)
        self._served.move_to_end(sent.call_id)
        if len(self._served) > SERVED_MEMORY:
            self._served.popitem(last=False)

    async def _close_departed(self) -> None:
        """Close the clients of workers that discovery dropped, once nothing runs on them."""
        present = {w.index for w in self.pool.workers}
        for index, (_, client, worker) in list(self._clients.items()):
            if index not in present and worker.outstanding == 0:
                del self._clients[index]
                await client.aclose()

    def _saturated(self, result: Result) -> Result:
        if not any(k == "retry-after" for k, _ in result.headers):
            result.headers.append(("retry-after", "1"))
        result.backend = self.name
        if self.cfg.fallback is not None:
            raise BackendSaturated(self.name, self.cfg.fallback, result)
        return result

    def _tracked(self, result: Result, worker: Worker) -> Result:
        """Label the result, and count the worker busy until its stream is done."""
        result.backend = self.name
        result.headers.append(("x-lgw-worker", str(worker.index)))
        if result.stream is None:
            self.pool.release(worker)
            return result
        result.observe(_Release(self.pool, worker))
        return result


class _Release(Observer):
    """The worker is busy until the answer is over; an answer ending in an error event has
    the supervisor look at the worker now (it may have died)."""

    stage = Stage.SOURCE
    __slots__ = ("pool", "worker")

    def __init__(self, pool: WorkerPool, worker: Worker) -> None:
        self.pool = pool
        self.worker = worker

    def ended(self, end: End) -> None:
        self.pool.release(self.worker)
        if end.in_error and end.outcome != "client_gone":
            self.worker.check_now.set()


def worker_request_id(call: Call) -> str:
    """The x-request-id a worker gets for ``call``, and keys its usage log on: the gateway's
    request id (for reading the two logs side by side) and the call's own id, since a client
    may send one x-request-id with two calls at once and the cut one must not be counted by
    the other's log. At most 117 characters, within the ids a worker accepts (128)."""
    return f"{call.request_id[:100]}.{call.call_id}"
