"""What every /admin/ handler starts with: the admin-key check, and JSON in and out.

The admin key is compared in constant time, so response timing says nothing about how much of
a guess was right. With no admin key configured the whole admin API is off (403), rather than
open. Bodies are checked against openapi/gateway.yaml by validators compiled once.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from typing import Any

import orjson
from starlette.requests import Request

from llm_gateway.api.context import context
from llm_gateway.api.dispatch import parse_json
from llm_gateway.api.state import State
from llm_gateway.auth.authenticate import presented_key
from llm_gateway.auth.keystore import KeyStore
from llm_gateway.errors import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    ServiceUnavailable,
)
from llm_gateway.web.body import read_body
from llm_gateway.web.responses import BytesResponse
from llm_gateway.web.spec import load_spec
from llm_gateway.web.validation import Validator, compile_request_validators

_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


def admin_state(request: Request) -> State:
    """The app state, once the request has shown the admin key (else 401 / 403)."""
    state = context(request.scope).state
    expected = state.auth.admin_key
    if expected is None:
        raise PermissionDenied(
            "The admin API is disabled: no admin key is configured (set the environment "
            f"variable {state.config.auth.admin_key_env}).", code="admin_disabled")
    given = presented_key(request.scope["headers"])
    if given is None or not hmac.compare_digest(_digest(given), _digest(expected)):
        raise AuthenticationFailed("Missing or incorrect admin key.")
    return state


def _digest(value: str) -> bytes:
    # Equal-length inputs, so the comparison's time does not even reveal the key's length.
    return hashlib.sha256(value.encode()).digest()


def key_store(state: State) -> KeyStore:
    keys = state.auth.keys
    if keys is None:
        raise ServiceUnavailable("Keys need a database, and none is configured "
                                 "(storage.url; auth.mode keys or accounting.enabled).")
    return keys


async def json_body(request: Request, operation: str) -> dict[str, Any]:
    state = context(request.scope).state
    raw = await read_body(request.scope, request.receive, state.config.server.max_body_bytes)
    body = parse_json(raw)
    _validators()[operation](body)
    return body


def json_response(obj: Any, status: int = 200) -> BytesResponse:
    return BytesResponse(status, orjson.dumps(obj), list(_JSON))


def query_flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no", ""):
        return False
    raise InvalidRequest(f"Invalid value for '{name}': expected true or false.", param=name)


@cache
def _validators() -> dict[str, Validator]:
    # Compiled on first use and kept: the document is part of the package and never changes.
    return compile_request_validators(load_spec("gateway.yaml"))
