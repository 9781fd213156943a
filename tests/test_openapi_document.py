"""Our OpenAPI document: its shape, its refs, and its request schemas against OpenAI's examples.

The request schemas are compiled into the validators that run on every request, so besides
checking the document's structure these tests feed them every request body we can recover
from OpenAI's published specification (curl ``-d`` payloads, Python SDK calls and any
``requestBody`` examples) and a set of bodies that must be refused.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import shlex
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_gateway.app.validation import compile_request_validators
from llm_gateway.errors import InvalidRequest

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi" / "openai.yaml"
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/openai-openapi/openapi.yaml"

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
}
REQUEST_SCHEMAS = {
    "createChatCompletion": "CreateChatCompletionRequest",
    "createCompletion": "CreateCompletionRequest",
    "createEmbedding": "CreateEmbeddingRequest",
    "createResponse": "CreateResponse",
}
STREAMING = {"createChatCompletion", "createCompletion", "createResponse"}

# How the Python SDK spells each operation (the attribute chain after the client object).
SDK_METHODS = {
    "createChatCompletion": "chat.completions.create",
    "createCompletion": "completions.create",
    "createEmbedding": "embeddings.create",
    "createResponse": "responses.create",
}
# Fewest distinct example bodies each operation must yield from the reference, a little below
# what it holds today, so that a broken extractor cannot pass by finding nothing.
MIN_EXAMPLES = {
    "createChatCompletion": 4,
    "createCompletion": 2,
    "createEmbedding": 1,
    "createResponse": 6,
}

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
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict:
    with DOCUMENT.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def validators(document: dict) -> dict[str, Callable[[object], None]]:
    return compile_request_validators(document)


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        reason = f"OpenAI reference specification not found at {REFERENCE}"
        if "CI" in os.environ:
            pytest.fail(f"{reason}; CI is set, and CI must never skip this check")
        pytest.skip(reason)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is ~90k lines
    with REFERENCE.open("rb") as fh:
        return yaml.load(fh, Loader=loader)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in (spec.get("paths") or {}).items():
        for method in _HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                yield path, method, op


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
# Recovering request bodies from the reference specification
# --------------------------------------------------------------------------------------------


def _reference_operation(reference: dict, operation_id: str) -> dict:
    found = [op for _, _, op in _operations(reference) if op.get("operationId") == operation_id]
    assert len(found) == 1, f"{operation_id} appears {len(found)} times in the reference"
    return found[0]


def _snippets(op: dict) -> Iterator[tuple[str, str, str]]:
    """(example title, language, code) for every request snippet under x-oaiMeta.examples."""
    examples = (op.get("x-oaiMeta") or {}).get("examples") or []
    if isinstance(examples, dict):  # a single example is stored without the list
        examples = [examples]
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            continue
        title = str(example.get("title") or f"example {index}")
        request = example.get("request")
        if isinstance(request, str):
            yield title, "curl", request
        elif isinstance(request, dict):
            for language, code in request.items():
                if isinstance(code, str):
                    yield title, str(language), code


def _curl_bodies(code: str) -> Iterator[Any]:
    """JSON payloads passed to curl with -d/--data/--data-raw/--data-binary/--json."""
    try:
        words = shlex.split(code.replace("\\\n", " "))
    except ValueError:  # unbalanced quotes: not a snippet we can read
        return
    for flag, payload in itertools.pairwise(words):
        if flag in ("-d", "--data", "--data-raw", "--data-binary", "--json"):
            try:
                yield json.loads(payload)
            except ValueError:
                continue


def _python_bodies(code: str, sdk_method: str) -> Iterator[Any]:
    """Keyword arguments of ``client.<sdk_method>(...)`` calls that are plain literals.

    Module-level assignments of literals (``tools = [...]``) are substituted for names; a call
    with any argument we cannot evaluate is skipped rather than guessed at.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return
    names: dict[str, Any] = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            try:
                names[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                continue
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or node.args:
            continue
        chain: list[str] = []
        func = node.func
        while isinstance(func, ast.Attribute):
            chain.append(func.attr)
            func = func.value
        if ".".join(reversed(chain)) != sdk_method:
            continue
        body: dict[str, Any] = {}
        try:
            for keyword in node.keywords:
                if keyword.arg is None:
                    raise ValueError("**kwargs")
                if isinstance(keyword.value, ast.Name):
                    if keyword.value.id not in names:
                        raise ValueError(keyword.value.id)
                    value = names[keyword.value.id]
                else:
                    value = ast.literal_eval(keyword.value)
                if keyword.arg == "extra_body" and isinstance(value, dict):
                    body.update(value)
                elif keyword.arg not in ("extra_headers", "extra_query", "timeout"):
                    body[keyword.arg] = value
            # Through JSON, as the SDK would send it (tuples become lists, and so on).
            yield json.loads(json.dumps(body))
        except (ValueError, TypeError):
            continue


def reference_request_bodies(reference: dict, operation_id: str) -> list[tuple[str, Any]]:
    """Distinct request bodies the reference gives for one operation, each with its source."""
    op = _reference_operation(reference, operation_id)
    found: list[tuple[str, Any]] = []

    media = ((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
    if "example" in media:
        found.append(("requestBody example", media["example"]))
    for name, example in (media.get("examples") or {}).items():
        if isinstance(example, dict) and "value" in example:
            found.append((f"requestBody examples/{name}", example["value"]))

    for title, language, code in _snippets(op):
        if language == "curl":
            bodies = _curl_bodies(code)
        elif language == "python":
            bodies = _python_bodies(code, SDK_METHODS[operation_id])
        else:
            continue
        found.extend((f"{title} ({language})", body) for body in bodies)

    distinct: dict[str, tuple[str, Any]] = {}
    for source, body in found:
        distinct.setdefault(json.dumps(body, sort_keys=True), (source, body))
    return list(distinct.values())


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


# --------------------------------------------------------------------------------------------
# The request validators, against OpenAI's own examples and against bodies that must fail
# --------------------------------------------------------------------------------------------


def test_validators_cover_every_request_body(validators: dict) -> None:
    assert set(REQUEST_SCHEMAS) <= set(validators)


@pytest.mark.parametrize("operation_id", list(REQUEST_SCHEMAS))
def test_reference_examples_validate(reference: dict, validators: dict, operation_id: str) -> None:
    bodies = reference_request_bodies(reference, operation_id)
    assert len(bodies) >= MIN_EXAMPLES[operation_id], (
        f"only {len(bodies)} example bodies recovered for {operation_id}: "
        "has the reference changed how it stores examples?"
    )
    failures = []
    for source, body in bodies:
        try:
            validators[operation_id](body)
        except InvalidRequest as exc:
            failures.append(f"{source}: {exc.message} (param={exc.param})")
    assert not failures, "reference examples refused:\n" + "\n".join(failures)


def test_extractors_read_curl_and_python() -> None:
    curl = """curl https://api.openai.com/v1/embeddings \\
  -H "Content-Type: application/json" \\
  -d '{"model": "m", "input": "it'\\''s"}'
"""
    assert list(_curl_bodies(curl)) == [{"model": "m", "input": "it's"}]
    python = """
from openai import OpenAI
client = OpenAI()
messages = [{"role": "user", "content": "hi"}]
client.chat.completions.create(model="m", messages=messages, stream=True)
client.completions.create(model="m", prompt=open("f").read())
"""
    assert list(_python_bodies(python, "chat.completions.create")) == [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ]
    assert list(_python_bodies(python, "completions.create")) == []


_USER = [{"role": "user", "content": "Hello"}]

GOOD_BODIES = [
    ("createChatCompletion", {"model": "m", "messages": _USER}),
    (
        "createChatCompletion",
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "x"}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "temperature": None,
            "stop": None,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": {"50256": -100},
            "response_format": {"type": "json_object"},
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "a_field_we_do_not_know": {"anything": [1, 2]},
        },
    ),
    ("createChatCompletion", {"model": "m", "messages": _USER, "stop": ["a", "b", "c", "d"]}),
    ("createCompletion", {"model": "m", "prompt": [[1, 2], [3]], "logprobs": 5, "echo": True}),
    ("createCompletion", {"model": "m", "prompt": ["a", "b"], "suffix": None, "best_of": 2}),
    ("createEmbedding", {"model": "m", "input": [1, 2, 3], "encoding_format": "base64"}),
    ("createEmbedding", {"model": "m", "input": ["a", "b"], "dimensions": 256}),
    ("createResponse", {"input": "no model: a stored prompt may supply it"}),
    (
        "createResponse",
        {
            "model": "m",
            "input": [{"role": "user", "content": "hi"}],
            "max_output_tokens": 16,
            "metadata": {"k": "v"},
            "previous_response_id": None,
        },
    ),
]

BAD_BODIES = [
    ("createChatCompletion", "missing messages", {"model": "m"}, "messages"),
    (
        "createChatCompletion",
        "unknown role",
        {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
        "role",
    ),
    (
        "createChatCompletion",
        "message without role",
        {"model": "m", "messages": [{"content": "x"}]},
        "role",
    ),
    (
        "createChatCompletion",
        "temperature 3",
        {"model": "m", "messages": _USER, "temperature": 3},
        "temperature",
    ),
    ("createChatCompletion", "model 42", {"model": 42, "messages": _USER}, "model"),
    ("createChatCompletion", "missing model", {"messages": _USER}, "model"),
    ("createChatCompletion", "no messages", {"model": "m", "messages": []}, "messages"),
    (
        "createChatCompletion",
        "content is a number",
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
        "content",
    ),
    (
        "createChatCompletion",
        "content part without type",
        {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "content",
    ),
    ("createChatCompletion", "top_p 1.5", {"model": "m", "messages": _USER, "top_p": 1.5}, "top_p"),
    ("createChatCompletion", "n 0", {"model": "m", "messages": _USER, "n": 0}, "n"),
    ("createChatCompletion", "n 129", {"model": "m", "messages": _USER, "n": 129}, "n"),
    (
        "createChatCompletion",
        "presence_penalty -3",
        {"model": "m", "messages": _USER, "presence_penalty": -3},
        "presence_penalty",
    ),
    (
        "createChatCompletion",
        "top_logprobs 21",
        {"model": "m", "messages": _USER, "top_logprobs": 21},
        "top_logprobs",
    ),
    (
        "createChatCompletion",
        "logprobs as int",
        {"model": "m", "messages": _USER, "logprobs": 3},
        "logprobs",
    ),
    (
        "createChatCompletion",
        "five stop sequences",
        {"model": "m", "messages": _USER, "stop": ["a", "b", "c", "d", "e"]},
        "stop",
    ),
    (
        "createChatCompletion",
        "stream as string",
        {"model": "m", "messages": _USER, "stream": "yes"},
        "stream",
    ),
    (
        "createChatCompletion",
        "max_tokens -1",
        {"model": "m", "messages": _USER, "max_tokens": -1},
        "max_tokens",
    ),
    (
        "createChatCompletion",
        "response_format without type",
        {"model": "m", "messages": _USER, "response_format": {}},
        "response_format",
    ),
    (
        "createChatCompletion",
        "tool without type",
        {"model": "m", "messages": _USER, "tools": [{"function": {"name": "f"}}]},
        "tools",
    ),
    ("createChatCompletion", "body is a list", [{"model": "m"}], ""),
    ("createCompletion", "missing prompt", {"model": "m"}, "prompt"),
    ("createCompletion", "prompt is a number", {"model": "m", "prompt": 7}, "prompt"),
    ("createCompletion", "logprobs 6", {"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
    ("createEmbedding", "missing input", {"model": "m"}, "input"),
    (
        "createEmbedding",
        "unknown encoding",
        {"model": "m", "input": "x", "encoding_format": "int8"},
        "encoding_format",
    ),
    (
        "createEmbedding",
        "dimensions 0",
        {"model": "m", "input": "x", "dimensions": 0},
        "dimensions",
    ),
    ("createEmbedding", "empty input list", {"model": "m", "input": []}, "input"),
    (
        "createResponse",
        "temperature 2.5",
        {"model": "m", "input": "x", "temperature": 2.5},
        "temperature",
    ),
    (
        "createResponse",
        "max_output_tokens below minimum",
        {"model": "m", "input": "x", "max_output_tokens": 15},
        "max_output_tokens",
    ),
    ("createResponse", "input is a number", {"model": "m", "input": 42}, "input"),
    ("createResponse", "model 42", {"model": 42, "input": "x"}, "model"),
]


@pytest.mark.parametrize(("operation_id", "body"), GOOD_BODIES)
def test_valid_bodies_pass(validators: dict, operation_id: str, body: Any) -> None:
    validators[operation_id](body)


@pytest.mark.parametrize(
    ("operation_id", "body", "param"),
    [pytest.param(op, body, param, id=f"{op}-{label}") for op, label, body, param in BAD_BODIES],
)
def test_invalid_bodies_fail(validators: dict, operation_id: str, body: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validators[operation_id](body)
    assert param in (caught.value.param or ""), caught.value.message
