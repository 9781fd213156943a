"""A passthrough request's body: read as far as needed to find the `model` it names.

- JSON (`application/json`, `*+json`): read whole within `server.max_body_bytes`, like the
  model endpoints' bodies; a body that is not a JSON object is a 400.
- `application/x-www-form-urlencoded`: read whole within `server.max_body_bytes`, parsed.
- `multipart/form-data` (audio, image edits, files): spooled and parsed on the way in, within
  `server.max_upload_bytes` (passthrough_multipart.py); the fields that name stored objects
  (body_ids.py) are kept too.
- Anything else (a binary upload): relayed as it arrives, within `server.max_upload_bytes`;
  only a body that opens like a JSON object and fits `server.max_body_bytes` is read first, in
  case the upstream reads JSON whatever the Content-Type says.

A `model` field that is there must be a non-empty string. When routing renames the model,
the body is written again with the upstream's name (JSON and forms re-encoded, the multipart
form with the value replaced).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from llm_gateway.api import body_ids
from llm_gateway.api.dispatch import parse_json
from llm_gateway.api.passthrough_multipart import SpooledForm, boundary_of
from llm_gateway.errors import InvalidRequest, PayloadTooLarge
from llm_gateway.web.body import declared_length, read_body, stream_body

_WHITESPACE = b" \t\r\n"


class Body:
    """What was read of the request body, and how to send it on."""

    def __init__(self, *, raw: bytes | None = None, json: dict[str, Any] | None = None,
                 form: list[tuple[str, str]] | None = None, spooled: SpooledForm | None = None,
                 rest: AsyncIterator[bytes] | None = None, model: str | None = None) -> None:
        self.raw = raw  # the whole body, when it was read whole
        self.json = json  # parsed, when it is a JSON object
        self.form = form  # parsed, when it is a urlencoded form
        self.spooled = spooled
        self.rest = rest  # what is still to come from the client (relayed as it arrives)
        self.model = model
        self.size = len(raw) if raw is not None else 0  # bytes sent upstream so far

    def stream(self, model: str | None) -> tuple[AsyncIterator[bytes] | None, int | None]:
        """(the body to send, its length when known), the model renamed to `model` if given."""
        if self.spooled is not None:
            return self._count(self.spooled.stream(model)), self.spooled.length(model)
        if self.rest is not None:
            return self._count(self._rest(self.raw or b"", self.rest)), None
        raw = self.raw
        if raw is None:
            return None, None
        if model is not None and self.json is not None:
            raw = orjson.dumps({**self.json, "model": model})
        elif model is not None and self.form is not None:
            raw = urlencode([(k, model if k == "model" else v) for k, v in self.form]).encode()
        self.size = len(raw)
        return _once(raw), len(raw)

    @staticmethod
    async def _rest(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if head:
            yield head
        async for chunk in rest:
            yield chunk

    async def _count(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        self.size = 0
        async for chunk in chunks:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        if self.spooled is not None:
            self.spooled.close()


async def _once(raw: bytes) -> AsyncIterator[bytes]:
    yield raw


def _content_type(scope) -> str:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.decode("latin-1")
    return ""


def _has_body(scope) -> bool:
    length = declared_length(scope)
    if length is not None:
        return length > 0
    return any(k == b"transfer-encoding" for k, _ in scope["headers"])


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


async def read(scope, receive, max_body: int, max_upload: int) -> Body:
    """The body of this passthrough request, read as far as its kind needs (module doc)."""
    if not _has_body(scope):
        return Body()
    content_type = _content_type(scope)
    media = _media_type(content_type)
    if media == "multipart/form-data":
        return await _multipart(scope, receive, content_type, max_upload)
    if media == "application/json" or media.endswith("+json"):
        raw = await read_body(scope, receive, max_body)
        if not raw.strip(_WHITESPACE):
            return Body(raw=raw)
        body = parse_json(raw)
        return Body(raw=raw, json=body, model=_model(body.get("model"), "model" in body))
    if media == "application/x-www-form-urlencoded":
        return _urlencoded(await read_body(scope, receive, max_body))
    return await _other(scope, receive, max_body, max_upload)


async def _multipart(scope, receive, content_type: str, limit: int) -> Body:
    length = declared_length(scope)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    keep = body_ids.form_names(scope["method"], body_ids.endpoint_of(scope["path"]))
    form = SpooledForm(boundary_of(content_type), limit, keep)
    try:
        async for chunk in stream_body(receive, limit):
            form.feed(chunk)
        form.finish()
    except BaseException:
        form.close()
        raise
    return Body(spooled=form, model=form.model)


def _urlencoded(raw: bytes) -> Body:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form body is not valid UTF-8 urlencoded text.") from None
    models = [v for k, v in pairs if k == "model"]
    if len(models) > 1:
        raise InvalidRequest("The form body has more than one 'model' field.", param="model")
    return Body(raw=raw, form=pairs, model=_model(models[0], True) if models else None)


async def _other(scope, receive, max_body: int, max_upload: int) -> Body:
    length = declared_length(scope)
    if length is not None and length > max_upload:
        raise PayloadTooLarge(f"Request body is larger than the limit of {max_upload} bytes.")
    chunks = stream_body(receive, max_upload)
    parts: list[bytes] = []
    size = 0
    opening: bytes | None = None  # the body's first byte that is not whitespace
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if opening is None and (text := chunk.lstrip(_WHITESPACE)):
            opening = text[:1]
        if opening is not None and (opening != b"{" or size > max_body):
            # Not a JSON object, or too big to be one: relayed as it comes.
            return Body(raw=b"".join(parts), rest=chunks)
    head = b"".join(parts)
    if opening == b"{":  # the whole body opens like a JSON object and fits max_body
        try:
            body = parse_json(head)
        except InvalidRequest:
            return Body(raw=head)  # not JSON to anyone: relayed as it is
        return Body(raw=head, json=body, model=_model(body.get("model"), "model" in body))
    return Body(raw=head)


def _model(value: Any, present: bool) -> str | None:
    if not present:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest("The 'model' parameter must be a non-empty string.", param="model")
    return value
