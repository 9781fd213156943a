"""accounting/usage.py: usage from whole JSON bodies."""

from __future__ import annotations

import orjson

from llm_gateway.accounting.usage import Usage, usage_from_body


def test_chat_body_with_details():
    body = orjson.dumps({
        "id": "x", "choices": [{"message": {"content": 'a "usage": {} in text'}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                  "prompt_tokens_details": {"cached_tokens": 8},
                  "completion_tokens_details": {"reasoning_tokens": 2}},
        "system_fingerprint": "fp"})
    assert usage_from_body(body) == Usage(prompt=12, completion=5, cached=8, total=17)


def test_spaced_json_and_responses_shape():
    body = b'{"object": "response", "usage": {"input_tokens": 7, "output_tokens": 3, ' \
           b'"total_tokens": 10, "input_tokens_details": {"cached_tokens": 0}}, ' \
           b'"metadata": {"usage": "not this one"}}'
    assert usage_from_body(body) == Usage(prompt=7, completion=3, cached=0, total=10)


def test_embeddings_and_missing_usage():
    assert usage_from_body(b'{"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}}') \
        == Usage(prompt=4, completion=0, cached=0, total=4)
    assert usage_from_body(b'{"choices": []}') is None
    assert usage_from_body(b'{"usage": null}') is None
    assert usage_from_body(b"not json") is None
