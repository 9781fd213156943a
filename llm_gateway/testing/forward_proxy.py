"""A forward HTTP proxy for tests: a real server on 127.0.0.1 that speaks the proxy protocol.

CONNECT host:port opens a tunnel (what carries TLS to an https upstream); a request in
absolute form (`POST http://host:port/path HTTP/1.1`) is sent on to its host in origin form,
without the proxy's own headers and with `Connection: close`, and the answer is relayed as
it comes (streams too). With `credentials` ("user:password") a request without the matching
Proxy-Authorization gets 407. Each request is recorded in `seen`: (method, target, whether
it carried Proxy-Authorization). `hosts` maps "name:port" to the address the proxy really
connects to, as its DNS would: a name only the proxy can reach.

    with ForwardProxy(credentials="user:pw") as proxy:
        ... HTTPS_PROXY=proxy.url_with_credentials ...
        assert proxy.seen[0][0] == "CONNECT"
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from urllib.parse import urlsplit

_HOP = (b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive")


class ForwardProxy:
    def __init__(self, credentials: str | None = None,
                 hosts: dict[str, tuple[str, int]] | None = None) -> None:
        self.credentials = credentials
        self.hosts = dict(hosts or {})
        self.seen: list[tuple[str, str, bool]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        return f"http://{self.credentials}@127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        line, *fields = head[:-4].split(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        headers = [f.split(b":", 1) for f in fields]
        given = {name.strip().lower(): value.strip() for name, value in headers}
        authorized = b"proxy-authorization" in given
        self.seen.append((method, target, authorized))
        if self.credentials is not None and given.get(b"proxy-authorization") != \
                b"Basic " + base64.b64encode(self.credentials.encode()):
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(*self._route(host, int(port)))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            parts = urlsplit(target)
            up_reader, up_writer = await asyncio.open_connection(
                *self._route(parts.hostname or "", parts.port or 80))
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [name + b":" + value for name, value in headers
                    if name.strip().lower() not in _HOP]
            up_writer.write(f"{method} {path} {version}\r\n".encode("latin-1")
                            + b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def _route(self, host: str, port: int) -> tuple[str, int]:
        return self.hosts.get(f"{host}:{port}", (host, port))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
