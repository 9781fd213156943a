"""Our request schemas against OpenAI's examples, and against bodies that must be refused.

The request schemas are compiled into the validators that run on every request, so these tests
feed them every request body we can recover from OpenAI's published specification (curl ``-d``
payloads, Python SDK calls and any ``requestBody`` examples: see ``openapi_examples.py``) and a
set of bodies that must be refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from llm_gateway.errors import InvalidRequest
from llm_gateway.web.validation import compile_request_validators

from openapi_examples import (
    DOCUMENT,
    REFERENCE,
    REQUEST_SCHEMAS,
    _curl_bodies,
    _python_bodies,
    reference_request_bodies,
)

# Fewest distinct example bodies each operation must yield from the reference, a little below
# what it holds today, so that a broken extractor cannot pass by finding nothing.
MIN_EXAMPLES = {
    "createChatCompletion": 4,
    "createCompletion": 2,
    "createEmbedding": 1,
    "createResponse": 6,
}


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
