"""Azure OpenAI upstreams (`kind: azure`): OpenAI's wire format at Azure's URLs, with its keys.

Only the way there differs from an OpenAI upstream (docs/providers.md):

- the URL. With `api_version`, the dated form: the endpoints Azure scopes to a deployment
  (chat completions, completions, embeddings) at `/openai/deployments/{deployment}{endpoint}`,
  the others (the Responses API) at `/openai{endpoint}` with the deployment as the body's
  `model`, each with `?api-version=`. Without it, Azure's v1 form: `/openai/v1{endpoint}`, the
  deployment as the body's `model`. The client's bytes go out as they came whenever nothing in
  them changes (`Call.payload`).
- the deployment: the routed model name, or what `azure_deployments` maps it to. It becomes a
  path segment, so a name that would change the path is refused (400), never encoded.
- the credentials: an `api-key` header, or an Entra ID token as `Authorization: Bearer`; a
  team's own key replaces ours in the same header. OpenAI-Organization/Project never go there.

Answers come back untouched, as from OpenAI: Azure's error bodies (`innererror`, code
`content_filter`), `prompt_filter_results` and `content_filter_results` in answers and stream
chunks; usage is read from the same fields. Two things are not offered:

- a model list: Azure's lists name its models, not the deployments calls are made to, so
  listed names would route to deployments that do not exist (`list_models` is ignored);
- the passthrough (files, batches, ...): its paths are OpenAI's (config allows only openai).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import httpx
import orjson

from llm_gateway.backends.entra import EntraToken
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.call import Call, Result
from llm_gateway.config import UpstreamConfig
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest
from llm_gateway.path_safety import segment_problem
from llm_gateway.principal import Credentials

# The endpoints the dated API serves under /deployments/{deployment} (as the openai SDK's
# AzureOpenAI client knows them); the Responses API takes the deployment as its `model`.
DEPLOYMENT_SCOPED = frozenset({"/chat/completions", "/completions", "/embeddings"})
# Dated API versions before this one refuse `stream_options` (400, "Unrecognized request
# argument supplied"), which the gateway adds to ask for a stream's usage.
STREAM_OPTIONS_SINCE = "2024-09-01"


class AzureBackend(UpstreamBackend):
    def __init__(self, cfg: UpstreamConfig, env: Mapping[str, str], **kwargs) -> None:
        super().__init__(cfg, env, **kwargs)
        self.lists_models = False  # see the module doc
        self._deployments = dict(cfg.azure_deployments)
        version = cfg.api_version
        self._query = "" if version is None else f"?api-version={quote(version, safe='')}"
        self._no_stream_options = version is not None and version < STREAM_OPTIONS_SINCE
        # A team's key goes where ours does: Entra tokens as a bearer, keys as api-key.
        self._bearer = cfg.auth_token_env is not None or cfg.entra is not None
        self._azure_urls: dict[str, httpx.URL] = {}
        self._entra = EntraToken(cfg.entra, env, self.name) if cfg.entra is not None else None

    async def complete(self, call: Call) -> Result:
        credentials = call.credentials
        if self._entra is not None and not (credentials is not None and credentials.api_key):
            # The current token, read into the headers the call builds next (no await
            # between): a background refresh replaces it for later calls.
            self._auth["authorization"] = await self._entra.header()
        return await super().complete(call)

    def problem(self) -> str | None:
        entra = self._entra
        if entra is not None and entra.failure is not None and not entra.valid:
            return entra.failure
        return super().problem()

    async def aclose(self) -> None:
        if self._entra is not None:
            await self._entra.aclose()
        await super().aclose()

    def _own_auth(self, cfg: UpstreamConfig, env: Mapping[str, str]) -> dict[str, str]:
        if cfg.auth_token_env is not None:
            token = env.get(cfg.auth_token_env)
            return {"authorization": f"Bearer {token}"} if token else {}
        key = cfg.api_key(env)
        return {"api-key": key} if key else {}

    def _use_credentials(self, headers: dict[str, str], credentials: Credentials) -> None:
        key = credentials.api_key
        if key:
            if self._bearer:
                headers["authorization"] = f"Bearer {key}"
            else:
                headers["api-key"] = key

    def deployment(self, routed: str) -> str:
        """The deployment a routed model name is served by."""
        return self._deployments.get(routed, routed)

    def _target(self, call: Call) -> tuple[str, bytes]:
        routed = call.target_model or call.model
        deployment = self.deployment(routed)
        endpoint = call.endpoint
        if self._query and endpoint in DEPLOYMENT_SCOPED:
            # A client may pick the name (a pattern route): it must stay one path segment.
            problem = segment_problem(deployment)
            if problem is not None:
                raise InvalidRequest(
                    f"The model '{clip(routed)}' cannot name an Azure OpenAI deployment of "
                    f"upstream '{self.name}': {problem}.", param="model", code="invalid_value")
            path = f"/openai/deployments/{deployment}{endpoint}{self._query}"
            return path, self._body(call, None)
        prefix = "/openai" if self._query else "/openai/v1"
        return f"{prefix}{endpoint}{self._query}", self._body(call, deployment)

    def _body(self, call: Call, model: str | None) -> bytes:
        if self._no_stream_options and not call.wants_usage and "stream_options" in call.body:
            # The gateway asked for usage, the client did not, and this API version refuses
            # the field: leave it out; the meter counts the stream's tokens itself.
            body = {k: v for k, v in call.body.items() if k != "stream_options"}
            body["model"] = model or call.target_model or call.model
            return orjson.dumps(body)
        return call.payload(model)

    def _url(self, path: str) -> httpx.URL:
        # The base class keeps only query-less paths (never a client's query); ours carry our
        # own api-version, one per deployment and endpoint.
        url = self._azure_urls.get(path)
        if url is None:
            url = super()._url(path)
            if len(self._azure_urls) < 256:
                self._azure_urls[path] = url
        return url

    async def forward(self, method: str, path: str, query: str,
                      client_headers: Mapping[str, str], request_id: str,
                      body: AsyncIterator[bytes] | None,
                      credentials: Credentials | None = None) -> Result:
        raise InvalidRequest(
            f"Upstream '{self.name}' is Azure OpenAI: only the model endpoints (chat, "
            f"completions, embeddings, responses) reach it, not /v1{clip(path)}.",
            param="model", code="model_not_supported")
