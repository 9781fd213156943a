"""OpenAI's response objects: chat.completion(.chunk), text_completion, embeddings, models.

One shaper per endpoint family builds every object of one response, so the streaming and
whole-body paths in the server share a single loop and differ only here.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence

import numpy as np
import orjson

from llm_gateway.worker.engines.base import Finished, TokenLogprob

SYSTEM_FINGERPRINT = "lgw-local"


def sse(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def usage(finished: Finished) -> dict:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _top_entry(token: str, raw: bytes, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(raw)}


def chat_logprob(lp: TokenLogprob) -> dict:
    entry = _top_entry(lp.token, lp.bytes, lp.logprob)
    entry["top_logprobs"] = [_top_entry(t.token, t.bytes, t.logprob) for t in lp.top]
    return entry


class ChatShaper:
    def __init__(self, model: str, include_usage: bool = False) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict]) -> dict:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                 "choices": choices}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: null on every chunk but the last when asked
        return chunk

    def head(self) -> list[dict]:
        return [self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "logprobs": None, "finish_reason": None}])]

    def delta(self, text: str, logprobs: Sequence[TokenLogprob] | None) -> dict:
        lp = {"content": [chat_logprob(x) for x in logprobs], "refusal": None} \
            if logprobs is not None else None
        return self._chunk([{"index": 0, "delta": {"content": text}, "logprobs": lp,
                             "finish_reason": None}])

    def end(self, finish_reason: str) -> dict:
        return self._chunk([{"index": 0, "delta": {}, "logprobs": None,
                             "finish_reason": finish_reason}])

    def usage_chunk(self, finished: Finished) -> dict:
        chunk = self._chunk([])
        chunk["usage"] = usage(finished)
        return chunk

    def whole(self, text: str, finished: Finished,
              logprobs: Sequence[TokenLogprob] | None) -> dict:
        lp = {"content": [chat_logprob(x) for x in logprobs], "refusal": None} \
            if logprobs is not None else None
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": lp, "finish_reason": finished.finish_reason}],
            "usage": usage(finished),
        }


class CompletionShaper:
    def __init__(self, model: str, include_usage: bool = False, echo: str | None = None) -> None:
        self.id = "cmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.echo = echo
        self._offset = len(echo or "")  # text_offset of the next token

    def _object(self, choices: list[dict]) -> dict:
        obj = {"id": self.id, "object": "text_completion", "created": self.created,
               "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
               "choices": choices}
        if self.include_usage:
            obj["usage"] = None
        return obj

    def _logprobs(self, entries: Sequence[TokenLogprob] | None) -> dict | None:
        if entries is None:
            return None
        offsets = []
        for lp in entries:
            offsets.append(self._offset)
            self._offset += len(lp.token)
        return {
            "tokens": [lp.token for lp in entries],
            "token_logprobs": [lp.logprob for lp in entries],
            "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in entries],
            "text_offset": offsets,
        }

    def head(self) -> list[dict]:
        if not self.echo:
            return []
        return [self._object([{"text": self.echo, "index": 0, "logprobs": None,
                               "finish_reason": None}])]

    def delta(self, text: str, logprobs: Sequence[TokenLogprob] | None) -> dict:
        return self._object([{"text": text, "index": 0, "logprobs": self._logprobs(logprobs),
                              "finish_reason": None}])

    def end(self, finish_reason: str) -> dict:
        return self._object([{"text": "", "index": 0, "logprobs": None,
                              "finish_reason": finish_reason}])

    def usage_chunk(self, finished: Finished) -> dict:
        obj = self._object([])
        obj["usage"] = usage(finished)
        return obj

    def whole(self, text: str, finished: Finished,
              logprobs: Sequence[TokenLogprob] | None) -> dict:
        obj = self._object([{"text": (self.echo or "") + text, "index": 0,
                             "logprobs": self._logprobs(logprobs),
                             "finish_reason": finished.finish_reason}])
        obj["usage"] = usage(finished)
        return obj


def embedding_list(model: str, vectors: Sequence[np.ndarray], tokens: int,
                   encoding_format: str = "float") -> dict:
    data = []
    for index, vector in enumerate(vectors):
        vector = np.asarray(vector, dtype=np.float32)
        if encoding_format == "base64":
            value: object = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        else:
            value = vector.tolist()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_list(name: str, created: int) -> dict:
    return {"object": "list",
            "data": [{"id": name, "object": "model", "created": created,
                      "owned_by": "llm-gateway"}]}
