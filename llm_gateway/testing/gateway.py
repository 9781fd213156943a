"""The gateway itself on a real port in a background thread, for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.app.edge import Edge
from llm_gateway.app.factory import create_app
from llm_gateway.config import Config
from llm_gateway.testing.threaded import ThreadedServer


class GatewayServer:
    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(env or {})
        self.port = 0
        self.app: Edge | None = None
        self._runner: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        self.app = create_app(self.config, env=self.env)
        self._runner = ThreadedServer(
            self.app, name="gateway", lifespan="on", http="httptools", loop="uvloop",
            timeout_graceful_shutdown=2,
        )
        self.port = self._runner.start()
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(timeout=10)
            self._runner = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
