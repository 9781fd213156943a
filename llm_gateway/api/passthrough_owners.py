"""The passthrough's call points for object ownership (which team created which file, batch,
vector store, fine-tune, upload, stored response...): the only place the passthrough touches
it. The rules are in passthrough_objects.py, passthrough_lists.py and auth/ownership.py.

- `check`, before a call is forwarded: a call on another team's object answers 404.
- `named`, once the body is read: a body naming another team's object (a batch's
  `input_file_id`, a vector store's `file_ids`...: body_ids.py) answers 404 too.
- `created`, with a small successful JSON answer, before the client sees it: what the call
  made becomes the caller's.
- `shown`, with the answer of a list call: only the caller's objects are left in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Scope

from llm_gateway.api import body_ids, passthrough_lists, passthrough_objects
from llm_gateway.call import Result
from llm_gateway.principal import Principal


async def check(state: Any, principal: Principal, method: str, path: str,
                scope: Scope | None = None) -> None:
    """Raises NotFound (404) when `path` names an object another team owns. With `scope`: a
    call whose answer the gateway must read asks the upstream for it uncompressed."""
    await passthrough_objects.check(state.owners, principal, path)
    if scope is not None and passthrough_objects.answer_read(method, path):
        scope["headers"] = [*((k, v) for k, v in scope["headers"] if k != b"accept-encoding"),
                            (b"accept-encoding", b"identity")]


async def named(state: Any, principal: Principal, method: str, path: str, body: Any) -> None:
    """Raises NotFound (404) when the request's `body` (passthrough_body.Body: JSON, a form
    or a multipart form) names an object that is not the caller's."""
    if not state.owners.enabled:
        return
    endpoint = body_ids.endpoint_of(path)
    found = body_ids.in_json(method, endpoint, body.json) if body.json is not None else []
    for pairs in (body.form, body.spooled.kept if body.spooled is not None else None):
        if pairs:
            found.extend(body_ids.in_form(method, endpoint, pairs))
    if found:
        await body_ids.check(state.owners, principal, found)


async def created(state: Any, principal: Principal, method: str, path: str,
                  answer: dict[str, Any]) -> None:
    """A call succeeded with `answer` (a JSON object): remember what it created, and for whom."""
    await passthrough_objects.created(state.owners, principal, method, path, answer)


async def shown(state: Any, principal: Principal, scope: Scope, result: Result,
                fetch: Callable[[dict], Awaitable[Result]]) -> Result:
    """`result` with only the caller's objects when the call lists a collection; `fetch`
    forwards a copy of the request's scope (for the next upstream page)."""
    collection = passthrough_objects.listed(scope["method"], scope["path"])
    if collection is None:
        return result
    return await passthrough_lists.filtered(state.owners, principal, collection.kind, scope,
                                            result, fetch)
