"""A fake Microsoft identity platform: a real HTTP server on 127.0.0.1 issuing Entra ID tokens.

It answers OAuth 2.0's client credentials grant as Entra's v2.0 endpoint does::

    POST /{tenant}/oauth2/v2.0/token   (application/x-www-form-urlencoded)
      grant_type=client_credentials&client_id=...&scope=...&client_secret=...
      (or client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
       &client_assertion=<a federated token>)
    200 {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
         "access_token": "..."}
    400/401 {"error": "invalid_client", "error_description": "AADSTS7000215: ...", ...}

and a managed identity's, as Azure's instance metadata service does::

    GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...[&client_id=...]
      Metadata: true
    200 {"access_token": "...", "expires_in": "86399", "expires_on": "...", "resource": ...,
         "token_type": "Bearer"}
    400 {"error": "invalid_request", "error_description": "..."}

    with FakeEntra(tenant="contoso", client_id="app", secret="s3cret") as entra:
        # authority: entra.url; hand FakeAzure `tokens=entra.valid` to accept its tokens

Tokens are opaque strings valid for `expires_in` seconds from issue (`valid(token)`); the
form of every request is recorded (`requests`); `fail_next(n)` refuses the next n.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llm_gateway.testing.threaded import ThreadedServer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FakeEntra:
    def __init__(self, *, tenant: str, client_id: str, secret: str | None = None,
                 assertion: str | None = None, expires_in: int = 3599,
                 identity: str | None = None) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.secret = secret  # the client secret it accepts
        self.assertion = assertion  # the federated token it accepts
        self.expires_in = expires_in
        self.identity = identity  # the user-assigned managed identity's client id; None: any
        self.requests: list[dict[str, str]] = []
        self._issued: dict[str, float] = {}  # token -> when it expires (time.monotonic)
        self._failures = 0
        self._lock = threading.Lock()
        self._server = ThreadedServer(Starlette(routes=[
            Route("/metadata/identity/oauth2/token", self._metadata, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"])]),
            name="fake-entra")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def __enter__(self) -> FakeEntra:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def valid(self, token: str) -> bool:
        with self._lock:
            expires = self._issued.get(token)
        return expires is not None and time.monotonic() < expires

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._failures += count

    @property
    def issued(self) -> int:
        with self._lock:
            return len(self._issued)

    async def _token(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        with self._lock:
            self.requests.append(form)
            failing = self._failures > 0
            self._failures -= failing
        if request.path_params["tenant"] != self.tenant:
            return _error(400, "invalid_request",
                          "AADSTS90002: Tenant '...' not found. Check to make sure you have "
                          "the correct tenant ID.")
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return _error(400, "invalid_request", "AADSTS900144: The request body must "
                          "contain the following parameter: 'grant_type' or 'scope'.")
        if form.get("client_id") != self.client_id:
            return _error(400, "unauthorized_client", "AADSTS700016: Application with "
                          "identifier was not found in the directory.")
        if failing or not self._authentic(form):
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret "
                          "provided. Ensure the secret being sent in the request is the "
                          "client secret value, not the client secret ID.")
        token = "eyJ0eXAi." + secrets.token_urlsafe(24)
        with self._lock:
            self._issued[token] = time.monotonic() + self.expires_in
        return JSONResponse({"token_type": "Bearer", "expires_in": self.expires_in,
                             "ext_expires_in": self.expires_in, "access_token": token})

    async def _metadata(self, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        with self._lock:
            self.requests.append({**query, "metadata": request.headers.get("metadata", "")})
            failing = self._failures > 0
            self._failures -= failing
        if request.headers.get("metadata") != "true":
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "Required metadata header not specified"}, status_code=400)
        if not query.get("api-version") or not query.get("resource"):
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "Required query variable missing"}, status_code=400)
        wanted = query.get("client_id")
        if failing or (wanted is not None and wanted != self.identity):
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "Identity not found"}, status_code=400)
        token = "eyJ0eXAi." + secrets.token_urlsafe(24)
        with self._lock:
            self._issued[token] = time.monotonic() + self.expires_in
        return JSONResponse({"access_token": token, "expires_in": str(self.expires_in),
                             "expires_on": str(int(time.time()) + self.expires_in),
                             "resource": query["resource"], "token_type": "Bearer"})

    def _authentic(self, form: dict[str, str]) -> bool:
        if "client_assertion" in form:
            return (form.get("client_assertion_type") == ASSERTION_TYPE
                    and self.assertion is not None
                    and form["client_assertion"] == self.assertion)
        return self.secret is not None and form.get("client_secret") == self.secret


def _error(status: int, error: str, description: str) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "error_description": description,
                            "error_codes": [int(description[6:].split(":")[0])],
                            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                            "trace_id": secrets.token_hex(16),
                            "correlation_id": secrets.token_hex(16)}
    return JSONResponse(body, status_code=status)
