"""Handlers of the fake OpenAI upstream for images, audio and batches, in OpenAI's shapes.

Deterministic, like the rest of the fake:

* ``POST /v1/images/generations`` (JSON): ``n`` images (default 1) as tiny ``b64_json``;
  models named ``gpt-image*`` also report token ``usage`` (input: words of the prompt,
  output: 100 per image), as OpenAI does.
* ``POST /v1/audio/speech`` (JSON): ``audio/mpeg`` bytes, 100 per character of ``input``.
* ``POST /v1/audio/transcriptions`` and ``/translations`` (multipart): the text says how many
  bytes the ``file`` part had and which ``model`` was asked; ``whisper*`` models report
  ``usage`` in seconds (one per 16,000 bytes, at least 1), others in tokens.
* ``POST /v1/batches`` (JSON): a batch object with a fresh ``batch_...`` id, echoing
  ``input_file_id``, ``endpoint`` and ``completion_window``.
* ``GET /v1/files/{id}/content``: the bytes a test put in ``fake.files[id]``; any other id
  is echoed like every other path (``?size=N`` downloads N bytes).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.responses import Response

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.fake_endpoints import _Incoming, _json_object, _json_response

SPEECH_BYTES_PER_CHARACTER = 100
IMAGE_OUTPUT_TOKENS = 100
TRANSCRIPTION_BYTES_PER_SECOND = 16_000
_PIXEL = base64.b64encode(b"\x89PNG fake image").decode()


def form_fields(body: bytes, content_type: str | None) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (the last of a repeated name), whole."""
    _, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if not boundary:
        raise fr.BadRequest("Expected a multipart/form-data body with a boundary.")
    fields: dict[str, bytes] = {}
    current: dict[str, Any] = {"header": b"", "name": None, "data": bytearray()}

    def header_field(data: bytes, start: int, end: int) -> None:
        current["header"] = current["header"] + data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        if current["header"].lower() == b"content-disposition":
            current["name"] = parse_options_header(data[start:end])[1].get(b"name")

    def header_end() -> None:
        current["header"] = b""

    def part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]

    def part_end() -> None:
        if current["name"] is not None:
            fields[current["name"].decode()] = bytes(current["data"])
        current.update(name=None, data=bytearray())

    parser = MultipartParser(boundary, callbacks={
        "on_header_field": header_field, "on_header_value": header_value,
        "on_header_end": header_end, "on_part_data": part_data, "on_part_end": part_end})
    parser.write(body)
    return fields


class FakeMedia:
    """Images, audio and batches endpoints of the fake upstream (see the module docstring)."""

    files: dict[str, bytes]
    _echo: Callable[[_Incoming], Response]  # FakeEndpoints'

    def _images(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise fr.BadRequest("Invalid 'n': expected an integer from 1 to 10.", "n")
        answer: dict[str, Any] = {"created": int(time.time()),
                                  "data": [{"b64_json": _PIXEL} for _ in range(n)]}
        if str(body.get("model", "")).startswith("gpt-image"):
            prompt = fr.count_words(str(body.get("prompt", "")))
            output = IMAGE_OUTPUT_TOKENS * n
            answer["usage"] = {"input_tokens": prompt, "output_tokens": output,
                               "total_tokens": prompt + output,
                               "input_tokens_details": {"text_tokens": prompt,
                                                        "image_tokens": 0}}
        return _json_response(answer)

    def _speech(self, inc: _Incoming) -> Response:
        text = _json_object(inc).get("input")
        if not isinstance(text, str) or not text:
            raise fr.BadRequest("Missing required parameter: 'input'.", "input")
        return Response(b"\xff\xfb" * (SPEECH_BYTES_PER_CHARACTER * len(text) // 2),
                        media_type="audio/mpeg")

    def _transcription(self, inc: _Incoming) -> Response:
        fields = form_fields(inc.raw, inc.request.headers.get("content-type"))
        audio = fields.get("file")
        model = fields.get("model", b"").decode()
        if audio is None or not model:
            raise fr.BadRequest("Expected a 'file' and a 'model' field.", "file")
        usage: dict[str, Any]
        if model.startswith("whisper"):
            seconds = max(1, len(audio) // TRANSCRIPTION_BYTES_PER_SECOND)
            usage = {"type": "duration", "seconds": seconds}
        else:
            output = 10
            usage = {"type": "tokens", "input_tokens": len(audio) // 1000,
                     "output_tokens": output, "total_tokens": len(audio) // 1000 + output}
        return _json_response({"text": f"{len(audio)} bytes heard by {model}", "usage": usage})

    def _file_content(self, inc: _Incoming) -> Response:
        content = self.files.get(inc.request.path_params["file_id"])
        if content is None:
            return self._echo(inc)
        return Response(content, media_type="application/octet-stream")

    def _batches(self, inc: _Incoming) -> Response:
        body = _json_object(inc)
        return _json_response({
            "id": f"batch_{uuid.uuid4().hex}", "object": "batch",
            "endpoint": body.get("endpoint"), "input_file_id": body.get("input_file_id"),
            "completion_window": body.get("completion_window"), "status": "validating",
            "created_at": int(time.time()),
        })
