"""OpenAI-shaped errors: one exception type per error kind, raised anywhere, shaped in one place.

The wire shape is OpenAI's: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson


class GatewayError(Exception):
    """Base of every error the gateway answers on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    # The backend calls made before this error ended the request (a route's deployments and
    # fallbacks, set by routing; 0 for a request that shared another's call), for the ledger
    # and the log line; None: not counted, one plain call.
    attempts: int | None = None
    # How request grouping took part in the failed call, as `Result.grouping` says it for an
    # answer: "miss" (it led the shared call), "coalesced" (it shared another's); None: not.
    grouping: str | None = None
    # The backend whose call failed (routing's last attempt), for the ledger; None: no call.
    backend: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body_bytes(self) -> bytes:
        return orjson.dumps(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    """The client sent its request too slowly; the connection is closed after the answer."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "request_header_fields_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class QuotaExceeded(GatewayError):
    """A key's or team's budget is used up (OpenAI's shape for an exhausted quota)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamUnavailable(GatewayError):
    """The backend could not be reached (connect error, dropped connection)."""

    status = 502
    type = "server_error"
    code = "upstream_unavailable"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"


def status_error_type(status: int) -> GatewayError:
    """Pick the error kind that matches a bare HTTP status (used for framework-raised errors)."""
    kinds: dict[int, type[GatewayError]] = {
        400: InvalidRequest,
        401: AuthenticationFailed,
        403: PermissionDenied,
        404: NotFound,
        405: MethodNotAllowed,
        413: PayloadTooLarge,
        415: UnsupportedMediaType,
        429: RateLimited,
        502: UpstreamUnavailable,
        503: ServiceUnavailable,
        504: UpstreamTimeout,
    }
    kind = kinds.get(status)
    if kind is None:
        kind = InvalidRequest if 400 <= status < 500 else InternalError
    err = kind("")
    err.status = status
    return err
