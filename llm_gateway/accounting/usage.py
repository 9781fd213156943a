"""Token usage as the backend reported it, read from a JSON body or from a stream's events.

Nothing is re-serialised and little is parsed: a body is searched from its end for the
top-level ``usage`` object and only that object is decoded; a stream is watched as its blocks
pass, keeping a reference to the last block that mentions usage, which is decoded once the
stream is over. Both OpenAI shapes are read: ``prompt_tokens``/``completion_tokens`` (chat,
completions, embeddings) and ``input_tokens``/``output_tokens`` (the Responses API, whose
stream carries usage inside its final ``response`` object).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable

import orjson

from llm_gateway.usage import Usage

_KEY = b'"usage"'
# `: {...}` after the key: an object nesting objects one level deep (token details), as usage
# objects do; possessive, so a body cut short cannot make it backtrack.
_OBJECT = re.compile(rb"\s*:\s*(\{(?:[^{}]++|\{[^{}]*+\})*+\})")
_WHOLE_PARSE_LIMIT = 1 << 16  # past this size, a body whose usage hides is not parsed whole

# A block bears content when it carries a non-empty piece of generated output: chat and
# completion text, a Responses API delta, a refusal, or a tool call. The first chunk of a chat
# stream (role only, empty content) does not count.
_CONTENT = re.compile(
    rb'"(?:content|text|delta|refusal|arguments)":\s*"(?!")|"tool_calls":\s*\[\s*\{'
)
_ERROR_EVENT = b'data: {"error"'


def usage_from_body(body: bytes) -> Usage | None:
    """The usage of a whole JSON answer, or None when it reports none."""
    end = len(body)
    for _ in range(3):  # the top-level object is (nearly) last; a metadata key may come after
        at = body.rfind(_KEY, 0, end)
        if at < 0:
            return None
        found = _OBJECT.match(body, at + len(_KEY))
        if found is not None:
            try:
                usage = Usage.from_object(orjson.loads(found.group(1)))
            except orjson.JSONDecodeError:
                usage = None
            if usage is not None:
                return usage
        end = at
    if len(body) > _WHOLE_PARSE_LIMIT:
        return None
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_object(whole.get("usage")) if isinstance(whole, dict) else None


def usage_from_events(block: bytes) -> Usage | None:
    """The usage reported by the last event of ``block`` (whole SSE events) that reports one."""
    end = len(block)
    while (at := block.rfind(_KEY, 0, end)) >= 0:
        start = block.rfind(b"\n", 0, at) + 1  # the `data:` line holding it
        stop = block.find(b"\n", at)
        line = block[start : stop if stop >= 0 else len(block)]
        end = start
        if not line.startswith(b"data:"):
            continue
        try:
            event = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        usage = Usage.from_object(event.get("usage"))
        if usage is None and isinstance(response := event.get("response"), dict):
            usage = Usage.from_object(response.get("usage"))
        if usage is not None:
            return usage
    return None


class StreamWatch:
    """Watches a stream of SSE blocks on its way to the client, without holding it.

    Notes when the first content-bearing block passed (time to first token) and keeps the last
    block that mentions usage (the usage chunk comes last, after the finish chunk); `usage()`
    decodes it once the stream is over. With ``keep`` it also keeps every block, for logs.
    """

    __slots__ = ("_clock", "blocks", "first_content_at", "last_block", "usage_block")

    def __init__(self, clock: Callable[[], float] = time.perf_counter, *, keep: bool = False):
        self._clock = clock
        self.first_content_at: float | None = None
        self.usage_block: bytes | None = None
        self.last_block = b""
        self.blocks: list[bytes] | None = [] if keep else None

    async def relay(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for block in blocks:
                if self.first_content_at is None and _CONTENT.search(block):
                    self.first_content_at = self._clock()
                if _KEY in block:
                    self.usage_block = block
                if self.blocks is not None:
                    self.blocks.append(block)
                self.last_block = block
                yield block
        finally:
            await blocks.aclose()  # type: ignore[attr-defined]

    def usage(self) -> Usage | None:
        return None if self.usage_block is None else usage_from_events(self.usage_block)

    @property
    def ended_in_error(self) -> bool:
        """Whether the stream ended with an error event (the backend failed mid-stream)."""
        last = self.last_block
        return last.startswith(_ERROR_EVENT, last.rfind(b"\ndata: ") + 1)
