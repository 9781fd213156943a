"""The models a batch would run, checked before `POST /v1/batches` goes upstream.

A batch names no model itself: each line of its input file (JSONL) holds a request whose
`body.model` the upstream will run, at the gateway's expense. So for a key or team limited to
some models, the input file is read back from the upstream (streamed, a line at a time, each
line within `server.max_body_bytes`, the file within `server.max_upload_bytes`) and every
model it names must be allowed, wherever the file came from. Keys allowed every model skip
this.
"""

from __future__ import annotations

import re
from typing import Any

from llm_gateway.api.dispatch import parse_json
from llm_gateway.backends.upstream import UpstreamBackend
from llm_gateway.errors import InvalidRequest
from llm_gateway.principal import Principal

_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")


class BatchLines:
    """The models named by a JSONL file's lines, read as its bytes arrive."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.models: set[str] = set()
        self._line = bytearray()
        self._number = 0

    def feed(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._line += data[start:end]
            self._take()
            start = end + 1
        self._line += data[start:]
        if len(self._line) > self.max_line:
            raise _unreadable(f"line {self._number + 1} is longer than server.max_body_bytes")

    def end(self) -> None:
        self._take()

    def _take(self) -> None:
        self._number += 1
        line, self._line = bytes(self._line), bytearray()
        if not line.strip():
            return
        try:
            request = parse_json(line)
        except InvalidRequest:
            raise _unreadable(f"line {self._number} is not a JSON object") from None
        body = request.get("body")
        model = body.get("model") if isinstance(body, dict) else None
        if model is not None:
            if not isinstance(model, str):
                raise _unreadable(f"line {self._number} has a model that is not a string")
            self.models.add(model)


def _unreadable(why: str) -> InvalidRequest:
    return InvalidRequest(f"The batch input file cannot be checked: {why}.",
                          param="input_file_id", code="invalid_batch_file")


def restricted(principal: Principal) -> bool:
    return bool(principal.models or principal.team_models)


async def models_of_batch(backend: UpstreamBackend, body: dict[str, Any], request_id: str,
                          principal: Principal, max_line: int, max_file: int) -> set[str]:
    """Every model the input file of this batch names (read from `backend`)."""
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not _FILE_ID.match(file_id):
        raise InvalidRequest("'input_file_id' must be a file id (letters, digits, '-', '_').",
                             param="input_file_id")
    result = await backend.forward("GET", f"/files/{file_id}/content", "", {}, request_id,
                                   None, principal.credentials_for(backend.name))
    lines = BatchLines(max_line)
    size = 0
    try:
        if result.status != 200:
            raise InvalidRequest(
                f"The batch input file '{file_id}' could not be read to check the models it "
                f"names (the upstream answered {result.status}).", param="input_file_id",
                code="invalid_batch_file")
        assert result.stream is not None
        async for chunk in result.stream:
            size += len(chunk)
            if size > max_file:
                raise _unreadable("it is larger than server.max_upload_bytes")
            lines.feed(chunk)
        lines.end()
    finally:
        if result.stream is not None:
            await result.stream.aclose()  # type: ignore[attr-defined]
        await result.aclose()
    return lines.models
