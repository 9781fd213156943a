"""Helpers for the grouping tests: calls, a backend the test drives step by step, a Grouper,
and `Held`, which keeps a real gateway's backend calls waiting until a test lets them go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import count
from typing import Any

import orjson

from llm_gateway.call import NO_HINTS, Call, Result
from llm_gateway.config import parse_config
from llm_gateway.grouping.layer import Grouper
from llm_gateway.principal import ANONYMOUS, Principal
from llm_gateway.testing import fake_responses as fr
from llm_gateway.testing.gateway import GatewayServer

_ids = count()
MESSAGES = [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]


def chat_call(*, stream: bool = False, principal: Principal = ANONYMOUS,
              hints: dict[str, str] | None = None, headers: dict[str, str] | None = None,
              **fields: Any) -> Call:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0}
    body.update(fields)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # what the accountant asks for
    return Call(operation="createChatCompletion", endpoint="/chat/completions",
                model=body["model"], body=body, raw=orjson.dumps(body), stream=stream,
                request_id=f"req_{next(_ids)}", headers=headers or {}, principal=principal,
                hints=hints or NO_HINTS)


class Held:
    """Holds the gateway's backend calls (inside grouping) until `release`."""

    def __init__(self, gateway: GatewayServer) -> None:
        self.grouper = gateway.app.state.grouper
        self.loop = gateway._runner.loop
        self.event = asyncio.Event()
        self.waiting = 0
        run = self.grouper.run

        async def held_run(call, principal, produce):
            async def held(c):
                self.waiting += 1
                await self.event.wait()
                return await produce(c)
            return await run(call, principal, held)

        self.grouper.run = held_run

    def members(self) -> int:
        return sum(s.members for s in list(self.grouper.coalescer.joinable.values()))

    async def until(self, predicate, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


def make_grouper(**grouping: Any) -> Grouper:
    config = parse_config({"grouping": grouping} if grouping else {}, env={})
    return Grouper(config, {})


class Backend:
    """A backend the test drives: it answers when released, streams what it is fed."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.feed: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.cancelled = False  # its stream was cancelled/closed before the end
        self.fail: BaseException | None = None
        self.status = 200

    async def produce(self, call: Call) -> Result:
        self.calls += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        if call.stream:
            return Result(200, [("x-upstream", "1")], stream=self._stream(),
                          media_type="text/event-stream", backend="fake")
        answer = fr.chat_answer(call.body)
        return Result(self.status, [("x-upstream", "1"), ("set-cookie", "mine")],
                      body=orjson.dumps(fr.chat_completion(answer)), backend="fake")

    async def _stream(self) -> AsyncIterator[bytes]:
        finished = False
        try:
            while True:
                item = await self.feed.get()
                if item is None:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not finished:
                self.cancelled = True

    def stream_all(self, call: Call) -> list[bytes]:
        """Feed a whole realistic chat stream for ``call``; returns its events."""
        events = events_for(call)
        for event in events:
            self.feed.put_nowait(event)
        self.feed.put_nowait(None)
        return events


def events_for(call: Call) -> list[bytes]:
    """The SSE events of a realistic chat stream answering ``call``."""
    return fr.chat_stream(fr.chat_answer(call.body))[0]


async def until(predicate, limit: int = 10_000) -> None:
    """Let the loop run until ``predicate()`` holds (no clock involved)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def read_all(result: Result) -> bytes:
    assert result.stream is not None
    return b"".join([block async for block in result.stream])


def content_of(stream: bytes) -> str:
    text = []
    for line in stream.splitlines():
        if line.startswith(b"data: {"):
            event = orjson.loads(line[6:])
            for choice in event.get("choices") or []:
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def ids_of(stream: bytes) -> set[str]:
    """The answer ids a stream's chunks carry."""
    return {orjson.loads(line[6:]).get("id") for line in stream.splitlines()
            if line.startswith(b"data: {")}


def same_but_id(got: bytes, original: bytes) -> bool:
    """Whether ``got`` is ``original`` under an answer id of its own (one id throughout)."""
    (new,), (old,) = ids_of(got), ids_of(original)
    return new != old and got.replace(new.encode(), old.encode()) == original
