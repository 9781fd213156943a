"""Cheap request validation: each operation's JSON body schema, compiled once at startup.

Connexion's own validator walks the schema per request with jsonschema, which is far too slow
for a gateway hot path. We convert the OpenAPI 3.0 schema to JSON Schema once, compile it to
Python code with fastjsonschema, and turn its exceptions into OpenAI-shaped 400s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import fastjsonschema

from llm_gateway.echo import clip
from llm_gateway.errors import InvalidRequest

Validator = Callable[[Any], None]

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# OpenAPI-only keywords that mean nothing to a JSON Schema validator.
_DROP = {"nullable", "example", "examples", "discriminator", "xml", "externalDocs",
         "readOnly", "writeOnly", "deprecated"}


def to_json_schema(node: Any) -> Any:
    """Convert an OpenAPI 3.0 schema (tree) to draft-07 JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key.startswith("x-"):
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key in ("properties", "definitions", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = to_json_schema(value)
    if "oneOf" in out:
        merged = _merge_typed_alternatives(out["oneOf"])
        if merged is not None:
            del out["oneOf"]
            out.update(merged)
    if node.get("nullable") is True:
        if "type" in out:
            kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*kinds, "null"] if "null" not in kinds else kinds
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


# Keywords that only constrain instances of one JSON type; anything else blocks a merge.
_TYPE_KEYWORDS = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "array": {"items", "minItems", "maxItems", "uniqueItems", "contains"},
    "object": {"properties", "required", "additionalProperties", "minProperties",
               "maxProperties", "patternProperties"},
}
_TYPE_KEYWORDS["integer"] = _TYPE_KEYWORDS["number"]
_NEUTRAL = {"description", "default", "title"}


def _merge_typed_alternatives(options: list) -> dict | None:
    """`oneOf` of options with distinct JSON types -> one schema with a type list.

    Equivalent (type-specific keywords only apply to their own type) and much cheaper: a
    compiled oneOf tries every option, so each message's `content` paid for a failed match.
    """
    types: list[str] = []
    merged: dict[str, Any] = {}
    for option in options:
        if not isinstance(option, dict):
            return None
        kinds = option.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not kinds or any(k not in _TYPE_KEYWORDS and k != "null" for k in kinds):
            return None
        allowed = set().union(*(_TYPE_KEYWORDS.get(k, set()) for k in kinds)) | _NEUTRAL
        if set(option) - allowed - {"type"}:
            return None
        for key, value in option.items():
            if key == "type" or key in _NEUTRAL:
                continue
            if key in merged:
                return None
            merged[key] = value
        types.extend(kinds)
    numeric = {"number", "integer"}
    if len(set(types)) != len(types) or numeric <= set(types):
        return None
    return {"type": types, **merged}


def _operations(spec: dict) -> list[tuple[str, dict]]:
    found = []
    for item in (spec.get("paths") or {}).values():
        for method in _HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict) and op.get("operationId"):
                found.append((op["operationId"], op))
    return found


def _body_schema(op: dict) -> dict | None:
    content = ((op.get("requestBody") or {}).get("content")) or {}
    media = content.get("application/json")
    return (media or {}).get("schema")


def compile_request_validators(spec: dict) -> dict[str, Validator]:
    """Compile one validator per operation with a JSON request body, keyed by operationId."""
    definitions = {
        name: to_json_schema(schema)
        for name, schema in ((spec.get("components") or {}).get("schemas") or {}).items()
    }
    validators: dict[str, Validator] = {}
    for operation_id, op in _operations(spec):
        schema = _body_schema(op)
        if schema is None:
            continue
        root = to_json_schema(copy.deepcopy(schema))
        if isinstance(root, dict):
            root = {**root, "definitions": definitions}
        # use_default=False: fastjsonschema would otherwise write every schema default into
        # the body (n, top_p, ...), and those would go upstream whenever it is re-serialised.
        validators[operation_id] = _wrap(fastjsonschema.compile(root, use_default=False))
    return validators


def _wrap(compiled: Callable[[Any], Any]) -> Validator:
    def validate(body: Any) -> None:
        try:
            compiled(body)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _to_invalid_request(exc) from None

    return validate


def _to_invalid_request(exc: fastjsonschema.JsonSchemaValueException) -> InvalidRequest:
    name = exc.name or "data"
    param = name[len("data"):].lstrip(".") if name.startswith("data") else name
    detail = exc.message
    if detail.startswith(name):
        detail = detail[len(name):].strip()
    # Both may hold what the client sent (a property name, a value): bounded.
    param, detail = clip(param), clip(detail)
    if exc.rule == "required" and isinstance(exc.value, dict):
        required = (exc.definition or {}).get("required") or []
        missing = [field for field in required if field not in exc.value]
        if missing:
            param = f"{param}.{missing[0]}" if param else missing[0]
            return InvalidRequest(
                f"Missing required parameter: '{param}'.", param=param,
                code="missing_required_parameter",
            )
    if not param:
        return InvalidRequest(f"Invalid request body: {detail}", param=None, code="invalid_body")
    return InvalidRequest(f"Invalid value for '{param}': {detail}", param=param,
                          code="invalid_value")
