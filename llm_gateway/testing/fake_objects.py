"""Handlers of the fake OpenAI upstream for stored objects: files, batches and vector stores.

Like OpenAI (with one account, whoever calls), the fake keeps what is created and serves it to
anyone who names its id:

* ``POST /v1/files`` (multipart ``file`` and ``purpose``, up to 1 MiB): a file object with a
  fresh ``file-...`` id; its bytes are then served at ``GET /v1/files/{id}/content``. Other
  bodies (larger ones are not kept) are echoed, like any other path.
* ``POST /v1/batches`` (:mod:`~llm_gateway.testing.fake_media` makes it) and
  ``POST /v1/vector_stores`` (JSON ``name``): kept too.
* ``GET /v1/{collection}``: a page in creation order, ``limit`` (default 20; files 10,000)
  and ``after``, with ``first_id``, ``last_id`` and ``has_more``.
* ``GET`` and ``DELETE /v1/{collection}/{id}``, ``POST /v1/vector_stores/{id}`` (modify
  ``name``), ``POST /v1/batches/{id}/cancel``. An id the fake did not make (in the path, or
  as ``after``) is echoed, like any other path (tests name made-up ids such as ``file-1``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.fake_endpoints import _Incoming, _json_object, _json_response
from llm_gateway.testing.fake_media import form_fields

# collection -> (object name, id prefix, default page size)
_KINDS = {"files": ("file", "file-", 10_000), "batches": ("batch", "batch_", 20),
          "vector_stores": ("vector_store", "vs_", 20)}


class FakeObjects:
    """Stored objects of the fake upstream (see the module docstring)."""

    files: dict[str, bytes]
    _lock: threading.Lock
    _objects: dict[str, dict[str, dict[str, Any]]]  # collection -> id -> object, in order
    _batches: Callable[[_Incoming], Response]  # FakeMedia's
    _echo: Callable[[_Incoming], Response]  # FakeEndpoints'

    def _collection(self, inc: _Incoming) -> Response:
        name = inc.path.split("/")[2]
        if inc.method == "GET":
            return self._page(name, inc)
        if name == "files":
            if not inc.raw or not (inc.request.headers.get("content-type") or "").startswith(
                    "multipart/form-data"):
                return self._echo(inc)
            made = self._new_file(inc)
        elif name == "batches":
            made = orjson.loads(self._batches(inc).body)
        else:
            made = {"id": f"vs_{uuid.uuid4().hex}", "object": "vector_store",
                    "name": _json_object(inc).get("name"), "created_at": int(time.time()),
                    "status": "completed", "file_counts": {"total": 0}}
        with self._lock:
            self._objects.setdefault(name, {})[made["id"]] = made
        return _json_response(made)

    def _object(self, inc: _Incoming) -> Response:
        _, _, name, object_id, *action = inc.path.split("/")
        with self._lock:
            kept = self._objects.get(name, {})
            found = kept.pop(object_id, None) if inc.method == "DELETE" else kept.get(object_id)
            if found is not None and inc.method == "POST":
                if action == ["cancel"]:
                    found["status"] = "cancelling"
                else:
                    found["name"] = _json_object(inc).get("name", found.get("name"))
        if found is None:
            return self._echo(inc)
        if inc.method == "DELETE":
            if name == "files":
                self.files.pop(object_id, None)
            kind = "file" if name == "files" else f"{_KINDS[name][0]}.deleted"
            return _json_response({"id": object_id, "object": kind, "deleted": True})
        return _json_response(found)

    def _new_file(self, inc: _Incoming) -> dict[str, Any]:
        fields = form_fields(inc.raw, inc.request.headers.get("content-type"))
        content = fields.get("file")
        purpose = fields.get("purpose", b"").decode()
        if content is None or not purpose:
            raise fr.BadRequest("Expected a 'file' and a 'purpose' field.", "file")
        file_id = f"file-{uuid.uuid4().hex}"
        self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content),
                "created_at": int(time.time()), "filename": "upload", "purpose": purpose,
                "status": "processed"}

    def _page(self, name: str, inc: _Incoming) -> Response:
        params = inc.request.query_params
        limit = params.get("limit", "")
        size = int(limit) if limit.isdigit() else _KINDS[name][2]
        with self._lock:
            objects = list(self._objects.get(name, {}).values())
        after = params.get("after")
        if after is not None:
            ids = [o["id"] for o in objects]
            if after not in ids:
                return self._echo(inc)
            objects = objects[ids.index(after) + 1:]
        page = objects[:size]
        return _json_response({"object": "list", "data": page,
                               "first_id": page[0]["id"] if page else None,
                               "last_id": page[-1]["id"] if page else None,
                               "has_more": len(objects) > size})

