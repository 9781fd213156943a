"""A multipart/form-data upload (audio, image edits, files), read once to find its `model`.

The `model` field may come after a large file part, and it must be checked before anything
goes upstream, so the body is spooled (memory, then a temporary file; bounded by
`server.max_upload_bytes`) as python-multipart parses it on the way in. What is spooled is the
form as the gateway understood it, written out again: each part's headers with its
Content-Disposition rebuilt from the parsed name and filename, then its data. So the upstream
reads exactly the fields the gateway checked (a second `model`, an encoded part or an
extended `name*=` parameter cannot hide one from it); the model's value is left out of the
spool and put back when it is sent, under its routed name when routing renamed it. The
values of the fields that name stored objects (`keep`, from body_ids.py) are kept as well,
to be checked before anything goes upstream.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from llm_gateway.errors import InvalidRequest, PayloadTooLarge

IN_MEMORY = 1 << 20  # smaller forms never touch the disk
READ_SIZE = 256 * 1024
MODEL_LIMIT = 1024  # bytes of a model name: anything longer is not one
_PLAIN_ENCODINGS = frozenset({b"7bit", b"8bit", b"binary"})


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid multipart/form-data body: {message}",
                          code="invalid_multipart")


class SpooledForm:
    """Parses chunks as they arrive (`feed`), then sends the form (`stream`)."""

    def __init__(self, boundary: bytes, limit: int, keep: frozenset[str] = frozenset()
                 ) -> None:
        self.boundary = boundary
        self.limit = limit
        self.size = 0  # bytes received from the client
        self.model: str | None = None
        # Text fields named in `keep` (those naming stored objects: body_ids.py), each value
        # also kept here, as read, to be checked before anything goes upstream.
        self.keep = {name.encode() for name in keep}
        self.kept: list[tuple[str, str]] = []
        self._keeping: bytes | None = None
        self._kept_value = bytearray()
        # Lives until the form is sent (close()), so no `with` here.
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # noqa: SIM115
        self._written = 0
        self._marker: int | None = None  # where the model's value goes in the spool
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._in_model = False
        self._model_value = bytearray()
        self._ended = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        })

    # --- parsing ------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {self.limit} "
                                  "bytes.")
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise _bad(str(exc)) from None

    def finish(self) -> None:
        if not self._ended:
            raise _bad("it ends before its closing boundary.")

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._written += len(data)

    def _part_begin(self) -> None:
        if self._ended:
            raise _bad("a part follows the closing boundary.")
        self._headers = []
        self._field.clear()
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        name, filename, others = _part_headers(self._headers)
        self._write(b"--" + self.boundary + b"\r\n" + _disposition(name, filename))
        for field, value in others:
            self._write(field + b": " + value + b"\r\n")
        self._write(b"\r\n")
        self._in_model = name == b"model"
        self._keeping = name if name in self.keep else None  # a file part too: read anyway
        self._kept_value.clear()
        if self._in_model:
            if self._marker is not None:
                raise _bad("it has more than one 'model' field.")
            self._marker = self._written

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_model:
            self._write(data[start:end])
            if self._keeping is not None:
                self._kept_value += data[start:end]
                if len(self._kept_value) > MODEL_LIMIT:
                    raise _bad(f"its '{self._keeping.decode()}' field is longer than "
                               f"{MODEL_LIMIT} bytes.")
            return
        self._model_value += data[start:end]
        if len(self._model_value) > MODEL_LIMIT:
            raise _bad(f"its 'model' field is longer than {MODEL_LIMIT} bytes.")

    def _part_end(self) -> None:
        if self._in_model:
            self._in_model = False
            try:
                self.model = self._model_value.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("its 'model' field is not UTF-8 text.") from None
            if not self.model:
                raise InvalidRequest("You must provide a model parameter.", param="model")
        if self._keeping is not None:
            try:
                self.kept.append((self._keeping.decode(), self._kept_value.decode("utf-8")))
            except UnicodeDecodeError:
                raise _bad(f"its '{self._keeping.decode()}' field is not UTF-8 text.") from None
            self._keeping = None
        self._write(b"\r\n")

    def _end(self) -> None:
        self._ended = True
        self._write(b"--" + self.boundary + b"--\r\n")

    # --- sending ------------------------------------------------------------------------------

    def length(self, model: str | None) -> int:
        return self._written + len(self._value_for(model))

    def _value_for(self, model: str | None) -> bytes:
        if self._marker is None:
            return b""
        return (model if model is not None else self.model or "").encode("utf-8")

    async def stream(self, model: str | None) -> AsyncIterator[bytes]:
        """The form as spooled, the model's value (renamed to `model` when given) put back."""
        marker = self._written if self._marker is None else self._marker
        file = self._file
        await asyncio.to_thread(file.seek, 0)
        left = marker
        while left > 0:
            piece = await asyncio.to_thread(file.read, min(READ_SIZE, left))
            if not piece:
                return
            left -= len(piece)
            yield piece
        if self._marker is not None:
            yield self._value_for(model)
        while piece := await asyncio.to_thread(file.read, READ_SIZE):
            yield piece

    def close(self) -> None:
        self._file.close()


def _part_headers(headers: list[tuple[bytes, bytes]]
                  ) -> tuple[bytes, bytes | None, list[tuple[bytes, bytes]]]:
    """(name, filename, the other headers) of one part, refusing what could be read two ways."""
    disposition: bytes | None = None
    others = []
    for field, value in headers:
        lowered = field.strip().lower()
        if lowered == b"content-disposition":
            if disposition is not None:
                raise _bad("a part has two Content-Disposition headers.")
            disposition = value
        elif lowered == b"content-transfer-encoding":
            if value.strip().lower() not in _PLAIN_ENCODINGS:
                raise _bad("encoded parts (Content-Transfer-Encoding) are not supported.")
        else:
            others.append((field, value))
    if disposition is None:
        raise _bad("a part has no Content-Disposition header.")
    kind, options = parse_options_header(disposition)
    name = options.get(b"name")
    if kind != b"form-data" or not name:
        raise _bad("a part is not a named form-data field.")
    if b'"' in name or b"\\" in name:
        raise _bad("a field name holds a quote or a backslash.")
    return name, options.get(b"filename"), others


def _disposition(name: bytes, filename: bytes | None) -> bytes:
    header = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        # As browsers write it (HTML's form encoding): a quote is percent-encoded.
        header += b'; filename="' + filename.replace(b'"', b"%22") + b'"'
    return header + b"\r\n"


def boundary_of(content_type: str) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _bad("the Content-Type header names no boundary.")
    return boundary
