"""Bodies and stream events of the fake OpenAI upstream, built deterministically from the request.

Pure functions, no I/O: :mod:`llm_gateway.testing.fake_upstream` serves them. This module
gathers them from where they live:

* :mod:`~llm_gateway.testing.fake_wire`: error bodies, SSE framing, passthrough download bytes;
* :mod:`~llm_gateway.testing.fake_answer`: the text and token-counting rules shared by every
  text-generating endpoint (the rules are spelled out there);
* :mod:`~llm_gateway.testing.fake_completions`: chat completions and legacy completions;
* :mod:`~llm_gateway.testing.fake_embeddings_models`: embeddings and the model list;
* :mod:`~llm_gateway.testing.fake_responses_api`: the Responses API and its event sequence.
"""

from __future__ import annotations

from llm_gateway.testing.fake_answer import (
    TOKENS_PER_MESSAGE,
    Answer,
    content_text,
    count_words,
)
from llm_gateway.testing.fake_completions import (
    SYSTEM_FINGERPRINT,
    chat_answer,
    chat_completion,
    chat_stream,
    completion,
    completion_answer,
    completion_stream,
)
from llm_gateway.testing.fake_embeddings_models import (
    DEFAULT_DIMENSIONS,
    DEFAULT_MODELS,
    MODEL_CREATED,
    embedding_vector,
    embeddings,
    model_list,
    model_object,
)
from llm_gateway.testing.fake_responses_api import (
    response_answer,
    response_deleted,
    response_object,
    response_stream,
)
from llm_gateway.testing.fake_wire import (
    DOWNLOAD_PIECE,
    SSE_DONE,
    BadRequest,
    download_bytes,
    download_piece,
    error_body,
    error_kind,
    sse,
    sse_named,
)

__all__ = [
    "DEFAULT_DIMENSIONS",
    "DEFAULT_MODELS",
    "DOWNLOAD_PIECE",
    "MODEL_CREATED",
    "SSE_DONE",
    "SYSTEM_FINGERPRINT",
    "TOKENS_PER_MESSAGE",
    "Answer",
    "BadRequest",
    "chat_answer",
    "chat_completion",
    "chat_stream",
    "completion",
    "completion_answer",
    "completion_stream",
    "content_text",
    "count_words",
    "download_bytes",
    "download_piece",
    "embedding_vector",
    "embeddings",
    "error_body",
    "error_kind",
    "model_list",
    "model_object",
    "response_answer",
    "response_deleted",
    "response_object",
    "response_stream",
    "sse",
    "sse_named",
]
