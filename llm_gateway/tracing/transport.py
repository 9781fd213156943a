"""Sending one encoded ExportTraceServiceRequest: OTLP/HTTP (the standard library's
http.client: one kept-alive connection, a third of httpx's CPU per batch, and the exporter
thread's CPU is the gateway's) or OTLP/gRPC (grpcio, the `otel` extra, imported only when
`protocol: grpc`). Each send says whether it went, may be retried (and after how long the
receiver asked), or failed for good."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from llm_gateway.config.proxies import Proxy, without_credentials

# OTLP/HTTP: these statuses are worth another try (the spec's list; 429 with Retry-After).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Sent:
    ok: bool
    retry: bool = False  # worth another try
    retry_after: float | None = None  # seconds, when the receiver said
    problem: str = ""  # what went wrong, for the log (never a header's value)


class Transport(Protocol):
    def send(self, payload: bytes, timeout: float) -> Sent: ...

    def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not worth a parser here: None)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpTransport:
    """Through ``proxy``, when there is one: a CONNECT tunnel to an https receiver (TLS end
    to end), a request in absolute form to an http one; Proxy-Authorization to it alone."""

    def __init__(self, endpoint: str, headers: dict[str, str],
                 proxy: Proxy | None = None) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        # (Host: http.client writes it from the host and port, IPv6 brackets included.)
        self._headers = {**headers, "content-type": "application/x-protobuf"}
        self._proxy: tuple[str, int] | None = None
        self._proxy_headers: dict[str, str] = {}
        if proxy is not None:
            bare, authorization = without_credentials(proxy.url)
            parts = urlsplit(bare)
            self._proxy = (parts.hostname or "", parts.port or 80)
            if authorization is not None:
                self._proxy_headers["proxy-authorization"] = authorization
            if not self._https:  # absolute form, the proxy's headers with the request's
                host = f"[{self._host}]" if ":" in self._host else self._host
                self._target = f"http://{host}:{self._port}{self._target}"
                self._headers.update(self._proxy_headers)
        self._connection: http.client.HTTPConnection | None = None  # kept between batches

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None:
            host, port = self._proxy or (self._host, self._port)
            if self._https:
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=ssl.create_default_context())
                if self._proxy is not None:
                    connection.set_tunnel(self._host, self._port, headers=self._proxy_headers)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            self._connection = connection
        else:
            connection.timeout = timeout  # the next connect's, if it reconnects
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def send(self, payload: bytes, timeout: float) -> Sent:
        for fresh in (False, True):
            reused = self._connection is not None and self._connection.sock is not None
            try:
                connection = self._connect(timeout)
                connection.request("POST", self._target, body=payload, headers=self._headers)
                response = connection.getresponse()
                response.read()  # the whole answer: the connection is then free again
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and not fresh and not isinstance(exc, TimeoutError):
                    continue  # the receiver closed an idle connection: once more, anew
                # refused, reset, timed out: the receiver may be back later
                return Sent(False, retry=True, problem=f"{type(exc).__name__}: {exc}")
            if response.will_close:
                self.close()
            status = response.status
            if 200 <= status < 300:
                return Sent(True)
            retry = status in RETRY_STATUSES
            return Sent(False, retry=retry, retry_after=_retry_after(
                response.getheader("retry-after")) if retry else None,
                problem=f"HTTP {status}")
        raise AssertionError("unreachable")  # (the second pass always returns)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class GrpcTransport:
    """The same bytes through grpcio's unary call, serialisers the identity. The proxy is
    the one chosen for the gateway (grpcio's own reading of the environment is turned off)."""

    def __init__(self, endpoint: str, headers: dict[str, str],
                 proxy: Proxy | None = None) -> None:
        import grpc  # type: ignore[import-untyped]  # the `otel` extra (build.py checked)

        self._grpc: Any = grpc
        url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        target = f"{url.hostname}:{url.port or 4317}"
        options = ([("grpc.http_proxy", proxy.url)] if proxy is not None
                   else [("grpc.enable_http_proxy", 0)])
        if url.scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(),
                                                options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = tuple((name.lower(), value) for name, value in headers.items())
        self._export = self._channel.unary_unary(
            GRPC_METHOD, request_serializer=None, response_deserializer=None)
        code = grpc.StatusCode
        # The OTLP spec's retryable codes.
        self._retryable = {code.CANCELLED, code.DEADLINE_EXCEEDED, code.RESOURCE_EXHAUSTED,
                           code.ABORTED, code.OUT_OF_RANGE, code.UNAVAILABLE, code.DATA_LOSS}

    def send(self, payload: bytes, timeout: float) -> Sent:
        try:
            self._export(payload, timeout=timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            status = exc.code() if hasattr(exc, "code") else None
            return Sent(False, retry=status in self._retryable,
                        problem=f"gRPC {getattr(status, 'name', status)}")
        return Sent(True)

    def close(self) -> None:
        self._channel.close()


def transport(protocol: str, endpoint: str, headers: dict[str, str],
              proxy: Proxy | None = None) -> Transport:
    if protocol == "grpc":
        return GrpcTransport(endpoint, headers, proxy)
    return HttpTransport(endpoint, headers, proxy)
