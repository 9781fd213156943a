"""A uvicorn server in a background thread with its own event loop, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


class ThreadedServer:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "server",
                 **options: Any) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.options = {"access_log": False, "log_config": None, "log_level": "warning",
                        **options}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Serve; returns the port once the socket listens (port 0 picks a free one)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, **self.options)
        server = self._server = uvicorn.Server(config)

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            try:
                await server.serve(sockets=[sock])
            finally:
                sock.close()

        def run() -> None:
            with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                runner.run(serve())

        self._thread = threading.Thread(target=run, name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(force=True)
                raise RuntimeError(f"{self.name} failed to start")
            time.sleep(0.005)
        return self.port

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the server's loop (from any thread); a no-op once the loop is gone."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(fn)

    def stop(self, *, force: bool = False, timeout: float = 10.0) -> bool:
        """Ask the server to exit (force: without waiting for in-flight requests); True if it
        has stopped within `timeout`."""
        if self._server is None or self._thread is None:
            return True
        self._server.should_exit = True
        self._server.force_exit = force
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self._server = self._thread = self.loop = None
        return True
