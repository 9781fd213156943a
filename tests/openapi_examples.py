"""Request bodies recovered from OpenAI's reference specification, for the OpenAPI tests.

Besides the paths of our document and of the reference, this reads every request body it can
from an operation in the reference: curl ``-d`` payloads, Python SDK calls and any
``requestBody`` examples. Imported by name from the tests, as ``gateway_support`` is.
"""

from __future__ import annotations

import ast
import itertools
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi" / "openai.yaml"
REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/openai-openapi/openapi.yaml"

REQUEST_SCHEMAS = {
    "createChatCompletion": "CreateChatCompletionRequest",
    "createCompletion": "CreateCompletionRequest",
    "createEmbedding": "CreateEmbeddingRequest",
    "createResponse": "CreateResponse",
}

# How the Python SDK spells each operation (the attribute chain after the client object).
SDK_METHODS = {
    "createChatCompletion": "chat.completions.create",
    "createCompletion": "completions.create",
    "createEmbedding": "embeddings.create",
    "createResponse": "responses.create",
}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in (spec.get("paths") or {}).items():
        for method in _HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                yield path, method, op


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
