"""Sending one encoded ExportTraceServiceRequest: OTLP/HTTP (httpx) or OTLP/gRPC (grpcio, the
`otel` extra, imported only when `protocol: grpc`). Each send says whether it went, may be
retried (and after how long the receiver asked), or failed for good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

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
    def __init__(self, endpoint: str, headers: dict[str, str]) -> None:
        self._endpoint = endpoint
        self._headers = {**headers, "content-type": "application/x-protobuf"}
        self._client = httpx.Client()  # one connection, kept alive between batches

    def send(self, payload: bytes, timeout: float) -> Sent:
        try:
            response = self._client.post(self._endpoint, content=payload,
                                         headers=self._headers, timeout=timeout)
        except httpx.HTTPError as exc:  # refused, reset, timed out: the receiver may be back
            return Sent(False, retry=True, problem=f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return Sent(True)
        retry = response.status_code in RETRY_STATUSES
        return Sent(False, retry=retry, retry_after=_retry_after(
            response.headers.get("retry-after")) if retry else None,
            problem=f"HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()


class GrpcTransport:
    """The same bytes through grpcio's unary call, serialisers the identity."""

    def __init__(self, endpoint: str, headers: dict[str, str]) -> None:
        import grpc  # type: ignore[import-untyped]  # the `otel` extra (build.py checked)

        self._grpc: Any = grpc
        url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        target = f"{url.hostname}:{url.port or 4317}"
        if url.scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(target)
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


def transport(protocol: str, endpoint: str, headers: dict[str, str]) -> Transport:
    if protocol == "grpc":
        return GrpcTransport(endpoint, headers)
    return HttpTransport(endpoint, headers)
