"""The stored objects a request body names, checked like an id in the path.

`POST /v1/responses {"previous_response_id": ...}` makes the upstream read that response, as
`POST /v1/batches {"input_file_id": ...}` does a file: with one shared upstream key, any id
is readable by whoever names it. So each field of OpenAI's request bodies (its OpenAPI
document) that names an object the gateway tracks (passthrough_objects.py) is listed here per
endpoint, and every id found in them must be the caller's (auth/ownership.py): another team's,
or in auth.mode keys an unknown one, answers the same 404 as in a path, and nothing is
forwarded.

Cheap by construction: one dict lookup per request (all an embeddings call pays), then only
the listed fields are walked (`[]`: each item of a list, `*`: each value of an object), never
the whole body: a short chat request pays about 2 us, as much as parsing it. A field holding a
string or a list of strings names those ids; anything else there is left to the upstream to
refuse. The ids are asked of the database once per kind (auth/ownership.py `visible`), at most
`MAX_NAMED` of them.

Not checked: ids of things the gateway does not track (prompts, connectors, upload parts,
items), ids quoted in replayed output items (a `file_search_call`'s results, a
`code_interpreter_call`'s container: they grant nothing), realtime and ChatKit (off by
default).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from llm_gateway.api.passthrough_objects import target_of
from llm_gateway.auth.ownership import Owners, not_found
from llm_gateway.errors import InvalidRequest
from llm_gateway.principal import Principal

# Distinct ids one body may name: OpenAI's largest list is a vector store file batch's (2,000
# `file_ids` and 2,000 `files`). More would cost a query per 500 for nothing an upstream takes.
MAX_NAMED = 4000

# Shared shapes: the tools of a response and the items of its input (and of a conversation).
_TOOLS = {
    "vector_store_ids": "vector_store",  # file_search
    "container": "container",  # code_interpreter: a container id...
    "container.file_ids": "file",  # ...or an automatic container with files
    "environment.container_id": "container",  # shell
    "environment.file_ids": "file",
    "environment.skills[].skill_id": "skill",
    "input_image_mask.file_id": "file",  # image_generation
}
_ITEM = {
    "content[].file_id": "file",  # input_file and input_image parts of a message
    "output.file_id": "file",  # computer_call_output's screenshot
    "output[].file_id": "file",  # function_call_output's content parts
    "environment.container_id": "container",
    **{f"tools[].{where}": kind for where, kind in _TOOLS.items()},
}
_RESPONSE = {
    "previous_response_id": "response",
    "conversation": "conversation",  # an id...
    "conversation.id": "conversation",  # ...or {"id": ...}
    "prompt.variables.*.file_id": "file",
    **{f"input[].{where}": kind for where, kind in _ITEM.items()},
    **{f"tools[].{where}": kind for where, kind in _TOOLS.items()},
}
_TOOL_RESOURCES = {
    "tool_resources.code_interpreter.file_ids": "file",
    "tool_resources.file_search.vector_store_ids": "vector_store",
    "tool_resources.file_search.vector_stores[].file_ids": "file",
}
_MESSAGE = {"attachments[].file_id": "file", "content[].image_file.file_id": "file"}
_THREAD = {**_TOOL_RESOURCES, **{f"messages[].{where}": kind for where, kind in _MESSAGE.items()}}


def _under(prefix: str, fields: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}.{where}": kind for where, kind in fields.items()}


# JSON bodies: (method, path after /v1 with "{}" for the object's id) -> fields.
_JSON: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/responses"): _RESPONSE,
    ("POST", "/responses/input_tokens"): _RESPONSE,
    ("POST", "/responses/compact"): _RESPONSE,
    ("POST", "/chat/completions"): {"messages[].content[].file.file_id": "file"},
    ("POST", "/conversations"): _under("items[]", _ITEM),
    ("POST", "/conversations/{}/items"): _under("items[]", _ITEM),
    ("POST", "/batches"): {"input_file_id": "file"},
    ("POST", "/fine_tuning/jobs"): {"training_file": "file", "validation_file": "file"},
    ("POST", "/vector_stores"): {"file_ids": "file"},
    ("POST", "/vector_stores/{}/files"): {"file_id": "file"},
    ("POST", "/vector_stores/{}/file_batches"): {"file_ids": "file", "files[].file_id": "file"},
    ("POST", "/assistants"): _TOOL_RESOURCES,
    ("POST", "/assistants/{}"): _TOOL_RESOURCES,
    ("POST", "/threads"): _THREAD,
    ("POST", "/threads/{}"): _TOOL_RESOURCES,
    ("POST", "/threads/runs"): {"assistant_id": "assistant", **_TOOL_RESOURCES,
                                **_under("thread", _THREAD)},
    ("POST", "/threads/{}/messages"): _MESSAGE,
    ("POST", "/threads/{}/runs"): {"assistant_id": "assistant",
                                   **_under("additional_messages[]", _MESSAGE)},
    ("POST", "/containers"): {"file_ids": "file", "skills[].skill_id": "skill"},
    ("POST", "/containers/{}/files"): {"file_id": "file"},
    ("POST", "/evals/{}/runs"): {"data_source.source.id": "file",  # a `file_id` source
                                 **_under("data_source.sampling_params.tools[]", _TOOLS)},
    ("POST", "/images/edits"): {"images[].file_id": "file", "mask.file_id": "file"},
    ("POST", "/videos"): {"input_reference.file_id": "file"},
    ("POST", "/videos/edits"): {"video.id": "video"},
    ("POST", "/videos/extensions"): {"video.id": "video"},
}
# The same fields in a form (multipart or urlencoded), named as the SDKs flatten them.
_FORM: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/containers/{}/files"): {"file_id": "file"},
    ("POST", "/videos"): {"input_reference[file_id]": "file"},
    ("POST", "/videos/edits"): {"video[id]": "video"},
    ("POST", "/videos/extensions"): {"video[id]": "video"},
}


@dataclass(frozen=True, slots=True)
class Node:
    """Where ids may be below one place of a body: `"a[].b"` and `"a[].c"` share the node of
    `a[]`, so each list is walked once, whatever the number of fields under it."""

    kind: str | None = None  # a string (or list of strings) right here names this kind
    each: Node | None = None  # `[]`: under each item of a list
    values: Node | None = None  # `*`: under each value of an object
    fields: tuple[tuple[str, Node], ...] = ()  # under these keys of an object


def _node(tree: dict[str, Any]) -> Node:
    return Node(kind=tree.get("="), each=_node(tree["[]"]) if "[]" in tree else None,
                values=_node(tree["*"]) if "*" in tree else None,
                fields=tuple((k, _node(v)) for k, v in tree.items() if k not in ("=", "[]", "*")))


def _trie(fields: dict[str, str]) -> Node:
    tree: dict[str, Any] = {}
    for where, kind in fields.items():
        place = tree
        for step in where.replace("[]", ".[]").split("."):
            place = place.setdefault(step, {})
        place["="] = kind
    return _node(tree)


JSON_FIELDS: dict[tuple[str, str], Node] = {endpoint: _trie(fields)
                                            for endpoint, fields in _JSON.items()}
FORM_FIELDS: dict[tuple[str, str], dict[str, str]] = _FORM


def endpoint_of(path: str) -> str:
    """A `/v1/...` path as the tables key it: `/v1/vector_stores/vs_1/files` ->
    `/vector_stores/{}/files`."""
    found = target_of(path)
    if found is None:
        return path[len("/v1"):].rstrip("/")
    parts = (*found.collection.path, *(("{}",) if found.object_id is not None else ()),
             *found.rest)
    return "/" + "/".join(parts).rstrip("/")


def in_json(method: str, endpoint: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, id) of each object the JSON `body` of a call to `endpoint` names."""
    found: list[tuple[str, str]] = []
    node = JSON_FIELDS.get((method, endpoint))
    if node is not None:
        _walk(body, node, found)
    return found


def form_names(method: str, endpoint: str) -> frozenset[str]:
    """The form fields of a call to `endpoint` that name objects (to keep when parsing)."""
    return frozenset(FORM_FIELDS.get((method, endpoint), ()))


def in_form(method: str, endpoint: str,
            pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """(kind, id) of each object the form fields `pairs` of a call to `endpoint` name."""
    fields = FORM_FIELDS.get((method, endpoint))
    if fields:
        yield from ((fields[name], value) for name, value in pairs if name in fields)


def _walk(value: Any, node: Node, found: list[tuple[str, str]]) -> None:
    if node.kind is not None:
        if type(value) is str:
            found.append((node.kind, value))
        elif type(value) is list:
            found.extend((node.kind, v) for v in value if type(v) is str)
    if type(value) is dict:
        for name, child in node.fields:
            below = value.get(name)
            # Only a container can hold ids further down; a string only where named here.
            if type(below) in _CONTAINERS or (child.kind is not None and below is not None):
                _walk(below, child, found)
        if node.values is not None:
            for below in value.values():
                _walk(below, node.values, found)
    elif type(value) is list and node.each is not None:
        for below in value:
            if type(below) in _CONTAINERS:
                _walk(below, node.each, found)


_CONTAINERS = (dict, list)


async def check(owners: Owners, principal: Principal, named: Iterable[tuple[str, str]]
                ) -> None:
    """Raises NotFound (404) when any of the `named` (kind, id) is not `principal`'s to use
    (as for a path's id: auth/ownership.py), ServiceUnavailable when that cannot be known."""
    wanted: dict[str, dict[str, None]] = {}  # kind -> ids, in order, once each
    count = 0
    for kind, object_id in named:
        ids = wanted.setdefault(kind, {})
        if object_id not in ids:
            ids[object_id] = None
            count += 1
            if count > MAX_NAMED:
                raise InvalidRequest(f"The request names more than {MAX_NAMED} stored objects.",
                                     code="too_many_objects")
    for kind, ids in wanted.items():
        allowed = await owners.visible(kind, ids, principal)  # one query per kind
        for object_id in ids:
            if object_id not in allowed:
                raise not_found(kind, object_id)


async def check_json(owners: Owners, principal: Principal, method: str, endpoint: str,
                     body: dict[str, Any]) -> None:
    """`check` of what a model endpoint's parsed body names (`endpoint`: `/responses`...)."""
    if (method, endpoint) in JSON_FIELDS:
        await check(owners, principal, in_json(method, endpoint, body))
