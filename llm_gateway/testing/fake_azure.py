"""A fake Azure OpenAI resource: a real HTTP server on 127.0.0.1 at Azure's URLs, with its keys.

It is :class:`~llm_gateway.testing.fake_upstream.FakeUpstream` (the same deterministic answers
and token rules, the same recording and failure injection) behind Azure's URL scheme::

    with FakeAzure(api_key="azure-key") as fake:
        # base_url: fake.url (the resource's endpoint); deployments: fake.deployments
        assert fake.requests[-1].path == "/openai/deployments/gpt-4o-prod/chat/completions"

Served, each POST:

* the dated form, `?api-version=` required (404 "Resource not found" without):
  `/openai/deployments/{deployment}/chat/completions`, `.../completions`, `.../embeddings`,
  and `/openai/responses` (the deployment is the body's `model`);
* the v1 form, no api-version (this fake refuses one, 400): `/openai/v1/chat/completions`,
  `/completions`, `/embeddings`, `/responses`, the deployment as the body's `model`.

Azure's ways: the `api-key` header (``api_key``) or an Entra ID bearer token (``token``, or
any that ``tokens`` says is valid: a :class:`~llm_gateway.testing.fake_entra.FakeEntra`'s), else
401 with Azure's body; an unknown deployment is 404 `DeploymentNotFound`; answers name the
deployment's model (``deployments`` maps deployment -> model), carry `prompt_filter_results`
and per-choice `content_filter_results`, and streams begin with a chunk with no choices and the
prompt's filter results; a prompt holding :data:`FILTER_TRIGGER` is Azure's 400
`content_filter` with `innererror`; an API version before 2024-09-01 refuses `stream_options`
(400); injected failures (:meth:`fail_next`) answer in Azure's error shape, a 429 with Azure's
message and its `retry_after` as Retry-After.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.fake_azure_wire import (
    ACCESS_DENIED,
    DEPLOYMENT_NOT_FOUND,
    FILTER_TRIGGER,
    NOT_FOUND,
    azure_error,
    content_filter_error,
    filtered_answer,
    filtered_stream,
    throttled,
)
from llm_gateway.testing.fake_endpoints import _error, _Incoming, _json_object, _json_response
from llm_gateway.testing.fake_failures import _Failure
from llm_gateway.testing.fake_upstream import ALL_METHODS, FakeUpstream

__all__ = ["DEFAULT_DEPLOYMENTS", "FILTER_TRIGGER", "FakeAzure"]

# Deployment name -> the model it runs (what answers name, as Azure's do).
DEFAULT_DEPLOYMENTS: Mapping[str, str] = {
    "gpt-4o-prod": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "embed-small": "text-embedding-3-small",
}
ENDPOINTS = ("/chat/completions", "/completions", "/embeddings")
# Dated API versions before this one know no `stream_options`.
STREAM_OPTIONS_SINCE = "2024-09-01"
_ERROR_CODES = {429: "429", 500: "InternalServerError", 503: "ServiceUnavailable"}


def _azure(status: int, code: str, message: str) -> Response:
    return Response(azure_error(code, message), status_code=status,
                    media_type="application/json")


class FakeAzure(FakeUpstream):
    """See the module doc. `url` is the resource's endpoint: an upstream's `base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 token: str | None = None, deployments: Mapping[str, str] | None = None,
                 chunk_delay: float = 0.0, tokens: Callable[[str], bool] | None = None) -> None:
        self.token = token
        self.tokens = tokens  # accepts bearer tokens it says are valid (FakeEntra.valid)
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)
        super().__init__(host, port, api_key=api_key, chunk_delay=chunk_delay)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- server side --------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        def route(path: str, handler: Callable[[_Incoming], Response], *, api: bool = True,
                  methods: list[str] | None = None) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self._handle(request, handler, echo=False, v1=api)

            return Route(path, endpoint, methods=methods or ["POST"])

        def serving(endpoint: str) -> Callable[[_Incoming], Response]:
            return lambda inc: self._serve(endpoint, inc)

        dated = [route(f"/openai/deployments/{{deployment}}{e}", serving(e)) for e in ENDPOINTS]
        v1 = [route(f"/openai/v1{e}", serving(e)) for e in (*ENDPOINTS, "/responses")]
        return Starlette(routes=[
            *dated, *v1, route("/openai/responses", serving("/responses")),
            route("/{rest:path}", lambda inc: _azure(404, "404", NOT_FOUND), api=False,
                  methods=ALL_METHODS),
        ])

    def _refused(self, path: str, query: str, headers: dict[str, str]) -> Response | None:
        if not self._authorized(headers):
            return _azure(401, "401", ACCESS_DENIED)
        versions = parse_qs(query).get("api-version")
        if path.startswith("/openai/v1/"):
            if versions:
                return _azure(400, "BadRequest", f"API version {versions[0]} is not supported "
                              "by the v1 API (this fake's rule: v1 takes no api-version).")
        elif not versions:
            return _azure(404, "404", NOT_FOUND)
        return None

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.api_key is None and self.token is None and self.tokens is None:
            return True
        bearer = headers.get("authorization", "")
        return (self.api_key is not None and headers.get("api-key") == self.api_key) or (
            self.token is not None and bearer == f"Bearer {self.token}") or (
            self.tokens is not None and bearer.startswith("Bearer ")
            and self.tokens(bearer[7:]))

    def _injected(self, failure: _Failure) -> Response:
        status = failure.status
        message = throttled(failure.retry_after) if status == 429 else failure.message
        return _azure(status, _ERROR_CODES.get(status, str(status)), message)

    def _serve(self, endpoint: str, inc: _Incoming) -> Response:
        body = _json_object(inc)
        deployment = inc.request.path_params.get("deployment", body.get("model"))
        model = self.deployments.get(deployment) if isinstance(deployment, str) else None
        if model is None:
            return _azure(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
        version = inc.request.query_params.get("api-version")
        if version is not None and version < STREAM_OPTIONS_SINCE and "stream_options" in body:
            return _error(400, "Unrecognized request argument supplied: stream_options",
                          "invalid_request_error", None)
        if FILTER_TRIGGER.encode() in inc.raw:
            return Response(content_filter_error(), status_code=400,
                            media_type="application/json")
        body = {**body, "model": model}  # Azure's answers name the model, not the deployment
        stream = body.get("stream") is True
        if endpoint == "/chat/completions":
            answer = fr.chat_answer(body)
            if stream:
                return self._stream(filtered_stream(fr.chat_stream(answer)))
            return _json_response(filtered_answer(fr.chat_completion(answer)))
        if endpoint == "/completions":
            answer = fr.completion_answer(body)
            if stream:
                return self._stream(filtered_stream(fr.completion_stream(answer)))
            return _json_response(filtered_answer(fr.completion(answer)))
        if endpoint == "/embeddings":
            return _json_response(fr.embeddings(body))
        return self._responses(dataclasses.replace(inc, json=body))
