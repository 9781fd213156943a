"""Entra ID tokens for an Azure OpenAI upstream (`entra:`), fetched and kept fresh.

Azure takes a bearer token from Microsoft's identity platform in place of an api-key, and a
token lasts about an hour (a managed identity's, up to a day). The gateway gets its own:

- as an app, with OAuth 2.0's client credentials grant at
  `{authority}/{tenant_id}/oauth2/v2.0/token`, proving who it is with the app's client secret
  or, for a workload identity (AKS), the federated token the kubelet writes to a file and
  rotates (read again for every fetch);
- as the machine's managed identity, from the instance metadata service
  (`identity_endpoint`, `GET ...?api-version=2018-02-01&resource=...` with `Metadata: true`).

- One fetch at a time: requests that wait for the first token share it.
- Refreshed in the background `refresh_before_seconds` before the token expires (at half its
  lifetime at the latest): requests go on with the current token meanwhile, never waiting.
- A failed fetch: requests that have no valid token get a 503 naming Entra's error code
  (never a secret); the next fetch waits a backoff (1 s doubling to 30 s), so a revoked secret
  does not flood the identity platform. A background refresh that fails leaves the current
  token in use until it expires.
- Bounded: `timeout_seconds` per fetch, an answer or token file read up to 64 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import orjson

from llm_gateway.config.schema import EntraConfig
from llm_gateway.echo import clip
from llm_gateway.errors import GatewayError, UpstreamUnavailable

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024  # a token answer, or a federated token file
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class EntraToken:
    """The current `Authorization` value for one upstream's calls (see the module doc)."""

    def __init__(self, cfg: EntraConfig, env: Mapping[str, str], upstream: str, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.upstream = upstream
        self.url = (cfg.identity_endpoint if cfg.managed_identity else
                    f"{cfg.authority.rstrip('/')}/{cfg.tenant_id}/oauth2/v2.0/token")
        self._secret = env.get(cfg.client_secret_env) if cfg.client_secret_env else None
        if cfg.client_secret_env and not self._secret:
            log.error("upstream %s: the Entra ID client secret variable %s is empty or unset",
                      upstream, cfg.client_secret_env)
        # The metadata service is on the machine's own link: never through a proxy.
        self._client = httpx.AsyncClient(transport=transport, timeout=cfg.timeout_seconds,
                                         follow_redirects=False,
                                         trust_env=not cfg.managed_identity)
        self._clock = clock
        self._header: str | None = None
        self._expires = 0.0  # clock time after which the token is not sent any more
        self._refresh_at = 0.0
        self._fetching: asyncio.Task[None] | None = None
        self.failure: str | None = None  # why the last fetch failed, until one succeeds
        self._retry_at = 0.0
        self._backoff = 0.0
        self.fetches = 0

    @property
    def valid(self) -> bool:
        return self._header is not None and self._clock() < self._expires

    async def header(self) -> str:
        """`Bearer <token>`, fetching one first when none is valid; raises a GatewayError
        (503) when none can be had."""
        now = self._clock()
        if self._header is not None and now < self._expires:
            if now >= self._refresh_at and now >= self._retry_at and self._fetching is None:
                self._start()  # this request goes on with the current token
            return self._header
        if self._fetching is None:
            if self.failure is not None and now < self._retry_at:
                raise self._error()
            self._start()
        fetching = self._fetching
        assert fetching is not None
        await asyncio.shield(fetching)  # a waiter cancelled does not cancel the others' fetch
        if self._header is not None and self._clock() < self._expires:
            return self._header
        raise self._error()

    def _error(self) -> UpstreamUnavailable:
        # A new one each time: one instance raised in many requests would grow its traceback.
        return UpstreamUnavailable(
            self.failure or f"upstream '{self.upstream}': no Entra ID token could be had",
            code="upstream_credentials")

    def _start(self) -> None:
        self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            token, lifetime = await self._request()
        except GatewayError as exc:
            self._failed(exc.message)
        except (httpx.HTTPError, OSError) as exc:
            self._failed(f"upstream '{self.upstream}': Entra ID could not be reached for a "
                         f"token ({type(exc).__name__})")
        except Exception as exc:  # a bug here must not become every call's 500
            log.exception("upstream %s: fetching an Entra ID token failed", self.upstream)
            self._failed(f"upstream '{self.upstream}': no Entra ID token could be had "
                         f"({type(exc).__name__})")
        else:
            now = self._clock()
            self._header = f"Bearer {token}"
            # Not sent in its last moments (clock skew, a slow request); refreshed earlier.
            self._expires = now + lifetime - min(60.0, lifetime / 10)
            self._refresh_at = now + max(lifetime - self.cfg.refresh_before_seconds,
                                         lifetime / 2)
            self.failure, self._backoff, self._retry_at = None, 0.0, 0.0
        finally:
            self._fetching = None

    def _failed(self, reason: str) -> None:
        self.failure = reason
        self._backoff = min(MAX_BACKOFF, self._backoff * 2 or FIRST_BACKOFF)
        self._retry_at = self._clock() + self._backoff
        log.warning("%s (retrying in %.0f s)", reason, self._backoff)

    async def _request(self) -> tuple[str, float]:
        cfg = self.cfg
        if cfg.managed_identity:
            # The metadata service names a resource, not a scope: the scope less "/.default".
            query = {"api-version": "2018-02-01", "resource": cfg.scope.removesuffix("/.default")}
            if cfg.client_id is not None:
                query["client_id"] = cfg.client_id  # a user-assigned identity
            request = self._client.build_request("GET", self.url, params=query,
                                                 headers={"metadata": "true"})
            return await self._token(request)
        form = {"grant_type": "client_credentials", "client_id": cfg.client_id or "",
                "scope": cfg.scope}
        if cfg.federated_token_file is not None:
            form["client_assertion_type"] = _ASSERTION_TYPE
            form["client_assertion"] = await asyncio.to_thread(
                _read_token_file, Path(cfg.federated_token_file), self.upstream)
        elif self._secret:
            form["client_secret"] = self._secret
        else:
            raise UpstreamUnavailable(
                f"upstream '{self.upstream}': the Entra ID client secret variable "
                f"{cfg.client_secret_env} is not set")
        return await self._token(self._client.build_request(
            "POST", self.url, data=form, headers={"accept": "application/json"}))

    async def _token(self, request: httpx.Request) -> tuple[str, float]:
        """The token and its lifetime in seconds from the identity platform's answer."""
        response = await self._client.send(request, stream=True)
        try:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise self._refused(f"an answer over {MAX_BYTES} bytes")
        finally:
            await response.aclose()
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise self._refused(f"HTTP {response.status_code}, not JSON")
        if response.status_code != 200:
            # Entra's error and the AADSTS code that starts its description; never the form.
            code = str(answer.get("error") or response.status_code)
            detail = str(answer.get("error_description") or "").split(":", 1)[0]
            reason = f"{code} ({detail})" if detail.startswith("AADSTS") else code
            raise self._refused(clip(reason))
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        seconds = 0.0
        if isinstance(lifetime, (int, float, str)):  # a number; the v1 endpoint's, a string
            with contextlib.suppress(ValueError):
                seconds = float(lifetime)
        if not isinstance(token, str) or not token or seconds <= 0:
            raise self._refused("an answer without access_token and expires_in")
        return token, seconds

    def _refused(self, reason: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"upstream '{self.upstream}': Entra ID gave no token: {reason}")

    async def aclose(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        await self._client.aclose()


def _read_token_file(path: Path, upstream: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UpstreamUnavailable(f"upstream '{upstream}': the federated token file could "
                                  f"not be read ({type(exc).__name__})") from None
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > MAX_BYTES:
        raise UpstreamUnavailable(f"upstream '{upstream}': the federated token file is "
                                  "empty or too large")
    return token
