"""An Anthropic upstream (`kind: anthropic`): OpenAI chat completions spoken to Anthropic's
Messages API (docs/providers.md#anthropic).

The request is translated (anthropic_request.py, anthropic_messages.py) and sent to
`POST {base_url}/messages` with `x-api-key` and `anthropic-version`; the answer comes back as
a chat.completion (anthropic_answer.py) or, streamed, as chat.completion.chunk events
(anthropic_stream.py). Sending, retries, deadlines and the relay's failure handling are every
HTTP upstream's (http_upstream.py). Only chat completions are served: any other endpoint is a
400 naming it, before anything is sent.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import orjson

from llm_gateway.backends.anthropic_answer import chat_completion, openai_error
from llm_gateway.backends.anthropic_request import DEFAULT_MAX_TOKENS, messages_request
from llm_gateway.backends.anthropic_stream import ChunkStream, translated
from llm_gateway.backends.headers import response_headers
from llm_gateway.backends.http_upstream import HttpUpstream, body_of, release
from llm_gateway.backends.sse import event_blocks
from llm_gateway.call import Call, Result
from llm_gateway.config import UpstreamConfig
from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

DEFAULT_VERSION = "2023-06-01"  # upstreams.<name>.anthropic_version when unset
CHAT = "/chat/completions"
# The client's headers that would speak for the gateway: its own key and API version go.
_NOT_FORWARDED = ("x-api-key", "anthropic-version")


class AnthropicBackend(HttpUpstream):
    def _auth_headers(self, cfg: UpstreamConfig, key: str | None) -> dict[str, str]:
        auth = {"anthropic-version": cfg.anthropic_version or DEFAULT_VERSION}
        if key:
            auth["x-api-key"] = key
        return auth

    async def complete(self, call: Call) -> Result:
        if call.endpoint != CHAT:
            raise InvalidRequest(
                f"The endpoint /v1{clip(call.endpoint)} is not served for model "
                f"'{clip(call.model)}': it is an Anthropic model (upstream '{self.name}'), "
                f"served only at /v1{CHAT}.", param="model", code="unsupported_endpoint")
        model = call.target_model or call.model
        max_tokens = self.cfg.default_max_tokens or DEFAULT_MAX_TOKENS
        body = messages_request(call.body, model, max_tokens, stream=call.stream)
        headers = self._headers(call)
        deadline = self._deadline()
        response = await self._send_with_retries(
            "POST", "/messages", headers=headers, content=orjson.dumps(body), deadline=deadline)
        out_headers = response_headers(response.headers.raw)
        if call.stream and response.status_code == 200:
            chunks = body_of(response)
            options = call.body.get("stream_options")
            stream = ChunkStream(model, include_usage=isinstance(options, dict)
                                 and options.get("include_usage") is True)
            blocks = translated(event_blocks(chunks, self.max_event_bytes), stream, self.name)
            return Result(status=200, headers=out_headers,
                          stream=self._relay(response, chunks, blocks, deadline),
                          media_type="text/event-stream", backend=self.name,
                          close=partial(release, response))
        raw = await self._read_whole(response, deadline)
        status = response.status_code
        if status == 200:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                message = None
            if isinstance(message, dict):
                answer = chat_completion(message, model)
            else:
                status, answer = 502, {"error": {
                    "message": f"upstream '{self.name}' answered 200 without a message",
                    "type": "server_error", "param": None, "code": "upstream_unavailable"}}
        else:
            status, answer = openai_error(status, raw, self.name)
        return Result(status=status, headers=out_headers, body=orjson.dumps(answer),
                      backend=self.name)

    async def list_models(self) -> list[dict[str, Any]]:
        """Anthropic's model list (`GET /models`) as OpenAI model objects."""
        response = await self._send_with_retries(
            "GET", "/models?limit=1000", headers=self._headers(None), content=None,
            deadline=self._deadline())
        data = (await self._read_json(response, "GET /models")).get("data") or []
        return [{"id": m["id"], "object": "model", "created": _epoch(m.get("created_at")),
                 "owned_by": "anthropic"}
                for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def _headers(self, call: Call | None) -> dict[str, str]:
        headers = {k: v for k, v in (call.headers if call else {}).items()
                   if k not in _NOT_FORWARDED}
        headers.update(self._static)
        headers.update(self._auth)
        if call is not None:
            credentials = call.credentials
            if credentials is not None and credentials.api_key:
                # A team's own key replaces ours (organization and project are OpenAI's).
                headers["x-api-key"] = credentials.api_key
            if self._request_id_header:
                headers[self._request_id_header] = call.request_id
            call.span.inject(headers)  # tracing on: our attempt's traceparent
        headers["content-type"] = "application/json"
        # Usage is read from the bodies, so ask for them uncompressed.
        headers["accept-encoding"] = "identity"
        return headers


def _epoch(stamp: Any) -> int:
    """An RFC 3339 time (Anthropic's created_at) as epoch seconds; 0 when there is none."""
    if not isinstance(stamp, str):
        return 0
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
