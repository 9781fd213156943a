"""Tokens reserved for a call before it runs."""

from __future__ import annotations

import orjson
import pytest

from llm_gateway.call import Call
from llm_gateway.limits.estimate import estimate


def call(body: dict, operation: str = "createChatCompletion") -> Call:
    return Call(operation=operation, endpoint="/x", model=body.get("model", "m"), body=body,
                raw=orjson.dumps(body), stream=False, request_id="r")


@pytest.mark.parametrize(("body", "operation", "expected"), [
    ({"messages": [{"role": "user", "content": "x" * 9}]}, "createChatCompletion", (3, 100)),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"},
                                                 {"type": "image_url", "image_url": {}}]}],
      "max_tokens": 7}, "createChatCompletion", (1, 7)),
    ({"messages": [], "max_completion_tokens": 5, "max_tokens": 9, "n": 3},
     "createChatCompletion", (0, 15)),
    ({"prompt": ["abcd", "efgh"], "max_tokens": 1}, "createCompletion", (2, 1)),
    ({"prompt": [1, 2, 3]}, "createCompletion", (3, 100)),  # token ids
    ({"input": "a" * 40}, "createEmbedding", (10, 0)),  # embeddings: input only
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "abcdefgh"}]}],
      "instructions": "abcd", "max_output_tokens": 50}, "createResponse", (3, 50)),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": True},
     "createChatCompletion", (1, 100)),  # a bool is not a count
])
def test_estimates(body, operation, expected):
    assert estimate(call(body, operation), 100) == expected
