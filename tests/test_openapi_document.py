"""Our OpenAPI document: its shape, its refs and how cheap its request schemas are.

Its request schemas, against OpenAI's examples and bodies that must be refused, are tested in
``test_openapi_examples.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from openapi_examples import DOCUMENT, REQUEST_SCHEMAS, _operations

# operationId -> (path in our document, method).
OPERATIONS = {
    "createChatCompletion": ("/v1/chat/completions", "post"),
    "createCompletion": ("/v1/completions", "post"),
    "createEmbedding": ("/v1/embeddings", "post"),
    "listModels": ("/v1/models", "get"),
    "retrieveModel": ("/v1/models/{model}", "get"),
    "createResponse": ("/v1/responses", "post"),
    "getResponse": ("/v1/responses/{response_id}", "get"),
    "deleteResponse": ("/v1/responses/{response_id}", "delete"),
    "listInputItems": ("/v1/responses/{response_id}/input_items", "get"),
}
STREAMING = {"createChatCompletion", "createCompletion", "createResponse"}

# What a request schema may use: cheap to compile and cheap to run.
ALLOWED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "nullable",
    "oneOf",
    "$ref",
    "description",
    "default",
    "example",
}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict:
    with DOCUMENT.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict]]:
    """Every mapping in a YAML tree, with a JSON-pointer-ish location."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}/{index}")


def _resolve(spec: dict, ref: str) -> Any:
    assert ref.startswith("#/"), f"non-local $ref {ref!r}"
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref!r} does not resolve"
        node = node[part]
    return node


def _schema_nodes(spec: dict, schema: Any, seen: set[str]) -> Iterator[tuple[str, dict]]:
    """Every schema object reachable from ``schema``, following $refs once each."""
    stack: list[tuple[str, Any]] = [("(root)", schema)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield where, node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            stack.append((ref, _resolve(spec, ref)))
        for name, sub in (node.get("properties") or {}).items():
            stack.append((f"{where}.{name}", sub))
        if "items" in node:
            stack.append((f"{where}[]", node["items"]))
        for index, branch in enumerate(node.get("oneOf") or []):
            stack.append((f"{where}|oneOf[{index}]", branch))


def _request_schema(spec: dict, operation_id: str) -> dict:
    path, method = OPERATIONS[operation_id]
    body = spec["paths"][path][method]["requestBody"]
    return body["content"]["application/json"]["schema"]


# --------------------------------------------------------------------------------------------
# The document's structure
# --------------------------------------------------------------------------------------------


def test_is_openapi_3_0(document: dict) -> None:
    assert str(document["openapi"]).startswith("3.0"), "Connexion 3 only accepts OpenAPI 3.0"


def test_servers_and_paths(document: dict) -> None:
    assert document["servers"] == [{"url": "/"}]
    for path in document["paths"]:
        assert path.startswith("/v1/"), f"{path} must be written in full, from /v1/"


@pytest.mark.parametrize(("operation_id", "location"), OPERATIONS.items())
def test_operation_at_its_path(document: dict, operation_id: str, location: tuple) -> None:
    path, method = location
    op = document["paths"].get(path, {}).get(method)
    assert op is not None, f"{method.upper()} {path} is missing"
    assert op.get("operationId") == operation_id


def test_operation_ids_are_exactly_ours(document: dict) -> None:
    ids = Counter(op.get("operationId") for _, _, op in _operations(document))
    assert ids == Counter(list(OPERATIONS)), "every operation once, and no others"


def test_every_ref_resolves(document: dict) -> None:
    refs = [(where, node["$ref"]) for where, node in _walk(document) if "$ref" in node]
    assert refs, "the document is expected to use $ref"
    for where, ref in refs:
        assert isinstance(ref, str) and ref.startswith("#/components/schemas/"), (where, ref)
        target = _resolve(document, ref)
        assert isinstance(target, dict), f"{where}: {ref} is not a schema"


def test_request_bodies_use_openai_schema_names(document: dict) -> None:
    for operation_id, name in REQUEST_SCHEMAS.items():
        schema = _request_schema(document, operation_id)
        assert schema == {"$ref": f"#/components/schemas/{name}"}, operation_id


def test_success_responses(document: dict) -> None:
    expected = {
        "createChatCompletion": {
            "application/json": "CreateChatCompletionResponse",
            "text/event-stream": "CreateChatCompletionStreamResponse",
        },
        "createCompletion": {
            "application/json": "CreateCompletionResponse",
            "text/event-stream": "CreateCompletionResponse",
        },
        "createEmbedding": {"application/json": "CreateEmbeddingResponse"},
        "listModels": {"application/json": "ListModelsResponse"},
        "retrieveModel": {"application/json": "Model"},
        "createResponse": {
            "application/json": "Response",
            "text/event-stream": "ResponseStreamEvent",
        },
        "getResponse": {
            "application/json": "Response",
            "text/event-stream": "ResponseStreamEvent",
        },
        "listInputItems": {"application/json": "ResponseItemList"},
    }
    for operation_id, media_types in expected.items():
        path, method = OPERATIONS[operation_id]
        content = document["paths"][path][method]["responses"]["200"]["content"]
        got = {media: body["schema"]["$ref"].rsplit("/", 1)[-1] for media, body in content.items()}
        assert got == media_types, operation_id


def test_get_response_query_parameters(document: dict) -> None:
    path, method = OPERATIONS["getResponse"]
    params = {p["name"]: p for p in document["paths"][path][method]["parameters"]}
    assert params["response_id"]["in"] == "path"
    assert params["include"]["schema"]["type"] == "array"
    assert params["stream"]["schema"]["type"] == "boolean"
    assert params["starting_after"]["schema"]["type"] == "integer"
    assert all(params[name]["in"] == "query" for name in ("include", "stream", "starting_after"))


def test_every_operation_declares_openai_shaped_errors(document: dict) -> None:
    schemas = document["components"]["schemas"]
    error = schemas["Error"]
    assert schemas["ErrorResponse"]["properties"]["error"] == {"$ref": "#/components/schemas/Error"}
    assert error["properties"]["message"]["type"] == "string"
    assert error["properties"]["type"]["type"] == "string"
    for field in ("param", "code"):
        assert error["properties"][field]["type"] == "string"
        assert error["properties"][field]["nullable"] is True

    for path, method, op in _operations(document):
        errors = {code: r for code, r in op["responses"].items() if str(code)[0] in "45"}
        assert {"401", "429", "500"} <= set(errors), f"{method} {path}: {sorted(errors)}"
        if "requestBody" in op:
            assert "400" in errors, f"{method} {path} takes a body and must declare 400"
        if "{" in path:
            assert "404" in errors, f"{method} {path} names a resource and must declare 404"
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, code)


def test_streaming_operations_are_marked(document: dict) -> None:
    for path, method, op in _operations(document):
        operation_id = op["operationId"]
        assert bool(op.get("x-lgw-streaming")) == (operation_id in STREAMING), operation_id
        if operation_id in STREAMING:
            assert op["x-lgw-streaming"] is True
            assert "text/event-stream" in op["responses"]["200"]["content"], (method, path)
            request = _resolve(document, _request_schema(document, operation_id)["$ref"])
            assert request["properties"]["stream"]["type"] == "boolean"


def test_request_schemas_stay_cheap(document: dict) -> None:
    """Only the allowed keywords, no closed objects, and oneOf never nested inside oneOf."""
    for operation_id in REQUEST_SCHEMAS:
        seen: set[str] = set()
        for where, node in _schema_nodes(document, _request_schema(document, operation_id), seen):
            extra = set(node) - ALLOWED_KEYWORDS
            assert not extra, f"{operation_id} {where}: keywords {sorted(extra)} not allowed"
            for index, branch in enumerate(node.get("oneOf") or []):
                inner = list(_schema_nodes(document, branch, set()))
                assert all("oneOf" not in n for _, n in inner), (
                    f"{operation_id} {where}: oneOf[{index}] holds another oneOf"
                )
    for where, node in _walk(document):
        assert node.get("additionalProperties") is not False, f"{where} closes an object"


def test_connexion_accepts_the_document(document: dict) -> None:
    from connexion import AsyncApp
    from connexion.resolver import Resolver

    async def handler(*args: Any, **kwargs: Any) -> None:  # never called
        return None

    app = AsyncApp(__name__)
    app.add_api(document, resolver=Resolver(function_resolver=lambda _: handler))
