"""Workers found by DNS: every address of one name is a worker, re-resolved periodically.

In Kubernetes, a headless Service (``clusterIP: None``) in front of the worker StatefulSet has
one A/AAAA record per ready pod, so resolving its name lists the workers:
``local.<name>.discovery: dns://llm-worker:8090`` makes each address a worker at
``http://<address>:8090``. Names go through the system resolver (``loop.getaddrinfo``), so
/etc/resolv.conf's search domains apply and a bare Service name works within its namespace.

What an answer means for the pool (applied by the supervisor, which treats these workers like
`urls:` ones, health checks included):

- a new address is a new worker; it gets requests once its health check passes;
- a vanished address is dropped; calls already on it finish;
- a name that does not exist (NXDOMAIN / no data: a headless Service with no ready pod) means
  no workers;
- any other failure (timeout, SERVFAIL, no resolver) keeps the current set: a DNS hiccup must
  not empty a pool whose workers are fine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

from llm_gateway.config.schema import parse_discovery

log = logging.getLogger(__name__)

# (host, port) -> addresses; raises socket.gaierror like getaddrinfo. Tests inject their own.
Resolver = Callable[[str, int], Awaitable[Iterable[str]]]

LOOKUP_TIMEOUT_SECONDS = 5.0
# getaddrinfo's "this name has no addresses" answers, as opposed to "could not find out".
_NO_SUCH_NAME = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)


async def system_resolver(host: str, port: int) -> list[str]:
    """The A and AAAA addresses of ``host``, from the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def worker_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


class Discovery:
    def __init__(self, target: str, interval: float, resolver: Resolver | None = None,
                 name: str = "") -> None:
        self.host, self.port = parse_discovery(target)
        self.interval = interval
        self.name = name  # the local backend's, for logs
        # Looked up here, not as a default argument, so tests can replace the module's resolver.
        self._resolve = resolver or system_resolver
        self._failing = False

    async def lookup(self) -> set[str] | None:
        """The worker URLs the name resolves to now; None when that could not be found out."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_SECONDS):
                addresses = await self._resolve(self.host, self.port)
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                self._failing = False
                return set()
            self._failed(exc)
            return None  # keep the workers known so far
        except (OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if self._failing:
            log.info("local %s: %s resolves again", self.name, self.host)
            self._failing = False
        return {worker_url(address, self.port) for address in addresses}

    async def run(self, apply: Callable[[set[str]], None]) -> None:
        """Resolve every ``interval`` seconds, handing each answer to ``apply``, until cancelled."""
        while True:
            urls = await self.lookup()
            if urls is not None:
                apply(urls)
            await asyncio.sleep(self.interval)

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:  # once per outage, not at every interval
            log.warning("local %s: cannot resolve %s (%s); keeping the workers known so far",
                        self.name, self.host, str(exc) or type(exc).__name__)
            self._failing = True
        return None
