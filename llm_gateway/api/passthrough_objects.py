"""Which upstream object a passthrough call is about, and what a create call made.

OpenAI's stateful endpoints (its OpenAPI document's paths) keep objects in collections:
`/v1/files/{file_id}/content` is about the file `{file_id}`, `/v1/threads/{thread_id}/runs/...`
about the thread. Everything under an object (its content, its cancel, its sub-objects) is
governed by that object's owner, so only the top-level object of each path is tracked.

- `check`, before a call is forwarded: a call on an object that is not the caller's answers
  404 (auth/ownership.py decides; an unknown id is refused in auth.mode keys).
- `created`, with the small JSON answer of a successful call: the objects it made become the
  caller's (`POST /v1/files` -> the file `id`; `POST /v1/uploads/{id}/complete` -> its `file`;
  `POST /v1/threads/runs` -> its `thread_id`), and so do the files a batch or fine-tuning job
  of the caller's wrote (`output_file_id`, `error_file_id`, `result_files`) as they appear in
  its answers.
- `listed`: the collection a `GET` lists, so that its answer can be filtered
  (passthrough_lists.py).

Not tracked: realtime calls and ChatKit (their families are off by default) and fine-tuning
checkpoint permissions (organisation-wide, not a team's). Ids named inside a request body (a
batch's `input_file_id`, a response's `previous_response_id`) are checked in body_ids.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_gateway.auth.ownership import Owners
from llm_gateway.principal import Principal


@dataclass(frozen=True, slots=True)
class Collection:
    kind: str  # the objects' kind in the ownership table
    path: tuple[str, ...]  # its path after /v1
    listed: bool = False  # GET on the path lists its objects (as a page: data, has_more)
    # Segments after the path that name an action on the collection, not an object.
    actions: frozenset[str] = frozenset()


COLLECTIONS: tuple[Collection, ...] = (
    Collection("file", ("files",), listed=True),
    Collection("batch", ("batches",), listed=True),
    Collection("vector_store", ("vector_stores",), listed=True),
    Collection("fine_tuning_job", ("fine_tuning", "jobs"), listed=True),
    Collection("upload", ("uploads",)),
    Collection("assistant", ("assistants",), listed=True),
    Collection("thread", ("threads",), actions=frozenset({"runs"})),
    Collection("container", ("containers",), listed=True),
    Collection("conversation", ("conversations",)),
    Collection("response", ("responses",), actions=frozenset({"input_tokens", "compact"})),
    Collection("chat_completion", ("chat", "completions"), listed=True),
    Collection("eval", ("evals",), listed=True),
    Collection("video", ("videos",), listed=True, actions=frozenset({"edits", "extensions"})),
    Collection("video_character", ("videos", "characters")),
    Collection("skill", ("skills",), listed=True),
    Collection("voice_consent", ("audio", "voice_consents"), listed=True),
)
# Longest paths first: /v1/videos/characters/{id} is a character, not the video "characters".
_BY_LENGTH = sorted(COLLECTIONS, key=lambda c: -len(c.path))

# Calls that create an object other than at the collection's own path: (kind, path after the
# collection's id or at an action) -> (the kind made, where its id is in the answer).
_MADE_AT: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {
    ("upload", ("complete",)): ("file", ("file", "id")),
    ("thread", ("runs",)): ("thread", ("thread_id",)),
    ("video", ("edits",)): ("video", ("id",)),
    ("video", ("extensions",)): ("video", ("id",)),
    ("video", ("remix",)): ("video", ("id",)),
}
# Files the upstream writes for an object, named in that object's answers.
_FILES_OF = {"batch": ("output_file_id", "error_file_id"), "fine_tuning_job": ("result_files",)}


@dataclass(frozen=True, slots=True)
class Target:
    collection: Collection
    object_id: str | None  # None: the collection itself (list, create, action)
    rest: tuple[str, ...]  # after the object's id, or the action


def target_of(path: str) -> Target | None:
    """What a `/v1/...` path is about, or None when no tracked collection holds it."""
    segments = tuple(path[len("/v1/"):].split("/")) if path.startswith("/v1/") else ()
    for collection in _BY_LENGTH:
        size = len(collection.path)
        if segments[:size] != collection.path:
            continue
        rest = segments[size:]
        if not rest or not rest[0]:
            return Target(collection, None, ())
        if rest[0] in collection.actions:
            return Target(collection, None, rest)
        return Target(collection, rest[0], rest[1:])
    return None


def listed(method: str, path: str) -> Collection | None:
    """The collection a call lists (a page of its objects), or None."""
    found = target_of(path) if method == "GET" else None
    if found is None or found.object_id is not None or found.rest or not found.collection.listed:
        return None
    return found.collection


def answer_read(method: str, path: str) -> bool:
    """Whether the gateway reads this call's answer (what a create made, a list to filter, the
    files a batch names): it is then asked for uncompressed, since only gzip and deflate could
    be read and an unread create would leave its object nobody's."""
    found = target_of(path)
    if found is None:
        return False
    if method == "POST" or listed(method, path) is not None:
        return True
    return (method == "GET" and found.object_id is not None and not found.rest
            and found.collection.kind in _FILES_OF)


async def check(owners: Owners, principal: Principal, path: str) -> None:
    """Raises NotFound (404) when `path` is about an object that is not the caller's (and
    ServiceUnavailable when that cannot be known)."""
    found = target_of(path)
    if found is not None and found.object_id is not None:
        await owners.check(found.collection.kind, found.object_id, principal)


async def created(owners: Owners, principal: Principal, method: str, path: str,
                  answer: dict[str, Any]) -> None:
    """A call answered 2xx with `answer`: the caller owns what it made."""
    found = target_of(path)
    if found is None or not owners.enabled:
        return
    kind = found.collection.kind
    if found.object_id is None and not found.rest:
        if method != "POST":
            return  # a list: its objects are filtered, not claimed
        await _claim(owners, principal, kind, answer.get("id"))
    elif (found.object_id is not None
          and await owners.check(kind, found.object_id, principal) is None):
        return  # an unknown id, merely forwarded: it passes no ownership on
    made = _MADE_AT.get((kind, found.rest[:1]))
    if made is not None and method == "POST":
        await _claim(owners, principal, made[0], _at(answer, made[1]))
    for name in _FILES_OF.get(kind, ()):
        value = answer.get(name)
        for file_id in value if isinstance(value, list) else [value]:
            await _claim(owners, principal, "file", file_id)


async def _claim(owners: Owners, principal: Principal, kind: str, object_id: Any) -> None:
    if isinstance(object_id, str) and object_id:
        await owners.claim(kind, object_id, principal)


def _at(answer: dict[str, Any], where: tuple[str, ...]) -> Any:
    value: Any = answer
    for name in where:
        value = value.get(name) if isinstance(value, dict) else None
    return value
