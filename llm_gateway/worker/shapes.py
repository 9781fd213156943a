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
    def __init__(self, model: str, include_usage: bool = False, choices: int = 1) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.choices = choices  # n: streamed choices interleave, each chunk names its index

    def _chunk(self, choices: list[dict]) -> dict:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                 "choices": choices}
        if self.include_usage:
            chunk["usage"] = None  # OpenAI: null on every chunk but the last when asked
        return chunk

    def head(self) -> list[dict]:
        return [self._chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                              "logprobs": None, "finish_reason": None}])
                for i in range(self.choices)]

    def delta(self, text: str, logprobs: Sequence[TokenLogprob] | None,
              index: int = 0) -> dict:
        return self._chunk([{"index": index, "delta": {"content": text},
                             "logprobs": _chat_logprobs(logprobs), "finish_reason": None}])

    def end(self, finish_reason: str, index: int = 0) -> dict:
        return self._chunk([{"index": index, "delta": {}, "logprobs": None,
                             "finish_reason": finish_reason}])

    def usage_chunk(self, finished: Finished) -> dict:
        chunk = self._chunk([])
        chunk["usage"] = usage(finished)
        return chunk

    def choice(self, text: str, finish_reason: str,
               logprobs: Sequence[TokenLogprob] | None, index: int = 0) -> dict:
        """One entry of a whole answer's `choices`."""
        return {"index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": _chat_logprobs(logprobs), "finish_reason": finish_reason}

    def answer(self, choices: list[dict], finished: Finished) -> dict:
        """The whole answer: its choices (`choice`), usage from the job's `Finished`."""
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices, "usage": usage(finished),
        }

    def whole(self, text: str, finished: Finished,
              logprobs: Sequence[TokenLogprob] | None) -> dict:
        """A whole answer of one choice."""
        return self.answer([self.choice(text, finished.finish_reason, logprobs)], finished)


def _chat_logprobs(entries: Sequence[TokenLogprob] | None) -> dict | None:
    if entries is None:
        return None
    return {"content": [chat_logprob(x) for x in entries], "refusal": None}


class CompletionShaper:
    def __init__(self, model: str, include_usage: bool = False, echo: str | None = None,
                 choices: int = 1) -> None:
        self.id = "cmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.echo = echo
        self.choices = choices
        # text_offset of each choice's next token (its text starts with the echo, if any)
        self._offsets = [len(echo or "")] * choices

    def _object(self, choices: list[dict]) -> dict:
        obj = {"id": self.id, "object": "text_completion", "created": self.created,
               "model": self.model, "system_fingerprint": SYSTEM_FINGERPRINT,
               "choices": choices}
        if self.include_usage:
            obj["usage"] = None
        return obj

    def _logprobs(self, entries: Sequence[TokenLogprob] | None, index: int) -> dict | None:
        if entries is None:
            return None
        offsets = []
        for lp in entries:
            offsets.append(self._offsets[index])
            self._offsets[index] += len(lp.token)
        return {
            "tokens": [lp.token for lp in entries],
            "token_logprobs": [lp.logprob for lp in entries],
            "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in entries],
            "text_offset": offsets,
        }

    def head(self) -> list[dict]:
        if not self.echo:
            return []
        return [self._object([{"text": self.echo, "index": i, "logprobs": None,
                               "finish_reason": None}]) for i in range(self.choices)]

    def delta(self, text: str, logprobs: Sequence[TokenLogprob] | None,
              index: int = 0) -> dict:
        return self._object([{"text": text, "index": index,
                              "logprobs": self._logprobs(logprobs, index),
                              "finish_reason": None}])

    def end(self, finish_reason: str, index: int = 0) -> dict:
        return self._object([{"text": "", "index": index, "logprobs": None,
                              "finish_reason": finish_reason}])

    def usage_chunk(self, finished: Finished) -> dict:
        obj = self._object([])
        obj["usage"] = usage(finished)
        return obj

    def choice(self, text: str, finish_reason: str,
               logprobs: Sequence[TokenLogprob] | None, index: int = 0) -> dict:
        return {"text": (self.echo or "") + text, "index": index,
                "logprobs": self._logprobs(logprobs, index), "finish_reason": finish_reason}

    def answer(self, choices: list[dict], finished: Finished) -> dict:
        obj = self._object(choices)
        obj["usage"] = usage(finished)
        return obj

    def whole(self, text: str, finished: Finished,
              logprobs: Sequence[TokenLogprob] | None) -> dict:
        return self.answer([self.choice(text, finished.finish_reason, logprobs)], finished)


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
