"""Why a deployment's answer is a failure worth moving on from, before any byte of it is sent.

- ``rate_limit`` (429) and ``error`` (5xx, 408, and 401/403/404: a deployment with a bad key or
  without the model is that deployment's fault, not the caller's; a timeout or an unreachable
  upstream) cool the deployment down and move the call to the next one;
- ``context_window`` (code ``context_length_exceeded``) and ``content_policy`` (OpenAI's
  ``content_policy_violation``, Azure's ``content_filter``) are the request's: every
  deployment of the same model would answer the same, so the call goes straight to the
  route's fallbacks for that reason, and nothing is cooled down;
- anything else (a 2xx, another 4xx) is the answer.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

import orjson

from llm_gateway.call import Result
from llm_gateway.errors import GatewayError

_DEPLOYMENT_STATUSES = frozenset({401, 403, 404, 408})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_POLICY_CODES = frozenset({"content_policy_violation", "content_filter",
                           "ResponsibleAIPolicyViolation"})
_MAX_ERROR_BODY = 64 * 1024  # an error body larger than this is not parsed for its code


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # error | rate_limit | context_window | content_policy
    cools: bool  # the deployment's fault: cool it down and try the next one
    retry_after: float | None = None  # seconds, from a 429's Retry-After


def of_result(result: Result) -> Failure | None:
    """The failure an answer is, or None when it is the answer to give."""
    status = result.status
    if status < 400:
        return None
    if status == 429:
        return Failure("rate_limit", True, retry_after(result.headers))
    if status >= 500 or status in _DEPLOYMENT_STATUSES:
        return Failure("error", True)
    if status == 400 and result.stream is None:
        code = _error_code(result.body)
        if code in _CONTEXT_CODES:
            return Failure("context_window", False)
        if code in _POLICY_CODES:
            return Failure("content_policy", False)
    return None


def of_error(exc: GatewayError) -> Failure | None:
    """A backend's raised error: unreachable, timed out or unavailable is the deployment's."""
    if exc.status >= 500:
        return Failure("error", True)
    return None


def _error_code(body: bytes) -> str | None:
    if not body or len(body) > _MAX_ERROR_BODY:
        return None
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    inner = error.get("innererror")
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        code = code if code in _POLICY_CODES else inner["code"]  # Azure's detail
    return code if isinstance(code, str) else None


def retry_after(headers: list[tuple[str, str]]) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None when absent or bad."""
    value = next((v for k, v in headers if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay
