"""Compiled request validation: OpenAPI 3.0 -> JSON Schema, errors naming the field."""

from __future__ import annotations

import pytest

from llm_gateway.errors import InvalidRequest
from llm_gateway.web.spec import load_spec
from llm_gateway.web.validation import compile_request_validators, to_json_schema


def test_nullable_becomes_a_null_type():
    assert to_json_schema({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert to_json_schema({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"], "enum": ["a", None]}
    keep = {"oneOf": [{"type": "string", "enum": ["a"]}, {"type": "string"}]}
    assert to_json_schema({**keep, "nullable": True}) == {"anyOf": [{"type": "null"}, keep]}


def test_oneof_of_distinct_types_becomes_a_type_list():
    merged = to_json_schema({"oneOf": [
        {"type": "string", "nullable": True},
        {"type": "array", "items": {"type": "object", "required": ["type"]}, "minItems": 1},
    ]})
    assert merged == {"type": ["string", "null", "array"],
                      "items": {"type": "object", "required": ["type"]}, "minItems": 1}
    # Overlapping types or type-agnostic keywords keep the oneOf.
    for options in ([{"type": "integer"}, {"type": "number"}],
                    [{"type": "string", "enum": ["x"]}, {"type": "array"}],
                    [{"type": "string"}, {"type": "string", "minLength": 2}]):
        assert "oneOf" in to_json_schema({"oneOf": options})


def test_refs_point_at_definitions_and_openapi_keywords_go():
    converted = to_json_schema({"$ref": "#/components/schemas/X", "example": 1,
                                "x-vendor": True, "properties": {"example": {"type": "string"}}})
    assert converted == {"$ref": "#/definitions/X",
                         "properties": {"example": {"type": "string"}}}


@pytest.fixture(scope="module")
def validators():
    return compile_request_validators(load_spec())


def test_one_validator_per_body_operation(validators):
    assert {"createChatCompletion", "createCompletion", "createEmbedding",
            "createResponse"} <= set(validators)


def test_good_body_passes_and_unknown_fields_are_allowed(validators):
    validators["createChatCompletion"]({
        "model": "m", "messages": [{"role": "user", "content": "x", "extra": 1}],
        "temperature": None, "stop": None, "brand_new_field": {"a": 1},
    })


@pytest.mark.parametrize("operation", ["createChatCompletion", "createCompletion",
                                       "createEmbedding", "createResponse"])
def test_validation_writes_no_defaults_into_the_body(validators, operation):
    # A body re-serialised for the backend (a renamed model, stream usage asked for) must
    # carry only what the client sent: no n, top_p, presence_penalty... from the schema.
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "prompt": "x",
            "input": "x"}
    sent = {**body}
    validators[operation](body)
    assert body == sent


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -1},
     "temperature", "invalid_value"),
    ({"model": "m", "messages": [{"role": "user"}, {"role": "pirate"}]}, "messages[1].role",
     "invalid_value"),
])
def test_errors_name_the_field(validators, body, param, code):
    with pytest.raises(InvalidRequest) as err:
        validators["createChatCompletion"](body)
    assert err.value.param == param
    assert err.value.code == code
    assert param in err.value.message
