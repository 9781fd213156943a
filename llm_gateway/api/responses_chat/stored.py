"""GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, for the responses
the gateway keeps itself (store.py): answered from the database, for their owner only."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.api.responses_chat.store import Stored
from llm_gateway.auth.ownership import not_found
from llm_gateway.call import Result
from llm_gateway.errors import InvalidRequest

KIND = "response"
MAX_LIMIT = 100  # items per page, as OpenAI's input_items
DEFAULT_LIMIT = 20


def _json(value: Any, backend: str | None) -> Result:
    return Result(200, body=orjson.dumps(value), backend=backend or "")


def _present(stored: Stored) -> dict:
    if stored.response is None:  # deleted: gone, for its owner too
        raise not_found(KIND, stored.id)
    return stored.response


def get(stored: Stored, query: dict[str, str]) -> Result:
    if query.get("stream") == "true":
        raise InvalidRequest("This response was made through chat completions and cannot be "
                             "replayed as a stream; fetch it without stream=true.",
                             param="stream", code="unsupported_value")
    return _json(_present(stored), stored.backend)


def deleted(stored: Stored) -> Result:
    return _json({"id": stored.id, "object": "response.deleted", "deleted": True},
                 stored.backend)


def input_items(stored: Stored, query: dict[str, str]) -> Result:
    """A page of the response's input items: `limit` (1-100, 20), `order` (desc, the
    default, or asc), `after` (an item id)."""
    _present(stored)
    items = list(stored.input_items or ())
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'.", param="order",
                             code="invalid_value")
    if order == "desc":
        items.reverse()
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}.", param="limit",
                             code="invalid_value")
    after = query.get("after")
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest("after must be the id of one of this response's input items.",
                                 param="after", code="invalid_value")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return _json({"object": "list", "data": page,
                  "first_id": page[0]["id"] if page else None,
                  "last_id": page[-1]["id"] if page else None,
                  "has_more": len(items) > limit}, stored.backend)
